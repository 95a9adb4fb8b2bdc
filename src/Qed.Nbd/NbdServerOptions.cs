using System.Security.Cryptography.X509Certificates;

namespace Qed.Nbd;

/// <summary>Settings of an <see cref="NbdServer"/>.</summary>
public sealed record NbdServerOptions
{
    /// <summary>The exports offered; the first one also answers to the empty (default) name.</summary>
    public required IReadOnlyList<NbdExport> Exports { get; init; }

    /// <summary>The TLS mode; anything but <see cref="NbdTlsMode.Off"/> needs <see cref="Certificate"/>.</summary>
    public NbdTlsMode TlsMode { get; init; } = NbdTlsMode.Off;

    /// <summary>The X.509 server certificate with its private key.</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>Connections served at once; further clients wait to be accepted (as qemu-nbd's -e).</summary>
    public int MaxConnections { get; init; } = 16;

    /// <summary>Requests processed at once on one connection; the reader pauses beyond it.</summary>
    public int MaxRequestsInFlight { get; init; } = 64;

    /// <summary>Payload bytes (WRITE data and READ replies) buffered at once on one connection.</summary>
    public long MaxBufferedBytes { get; init; } = 64L * 1024 * 1024;
}
