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

    /// <summary>
    /// Clients served at once (past their handshake), as qemu-nbd's -e; a further client's GO or EXPORT_NAME is
    /// answered once one of them leaves.
    /// </summary>
    public int MaxConnections { get; init; } = 16;

    /// <summary>
    /// Connections accepted and still negotiating at once; further clients wait in the listen backlog. Counted apart
    /// from <see cref="MaxConnections"/> so that sockets that never finish their handshake cannot lock served
    /// clients out.
    /// </summary>
    public int MaxHandshakes { get; init; } = 64;

    /// <summary>
    /// How long a connection may take from being accepted to choosing an export (TLS included) before it is dropped,
    /// as qemu-nbd's --handshake-limit (whose default is also 10 s). <see cref="TimeSpan.Zero"/> means no limit.
    /// </summary>
    public TimeSpan HandshakeLimit { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long sending a reply may make no progress (the client stopped reading) before the connection is closed;
    /// its requests still in flight finish, their replies are dropped. <see cref="TimeSpan.Zero"/> means no limit.
    /// </summary>
    public TimeSpan ReplyStallLimit { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests processed at once on one connection; the reader pauses beyond it.</summary>
    public int MaxRequestsInFlight { get; init; } = 64;

    /// <summary>Payload bytes (WRITE data and READ replies) buffered at once on one connection.</summary>
    public long MaxBufferedBytes { get; init; } = 64L * 1024 * 1024;
}
