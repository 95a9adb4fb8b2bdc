using System.Net;
using System.Net.Sockets;

namespace Qed.Nbd;

/// <summary>
/// A fixed-newstyle NBD server over TCP or a Unix socket. Each connection runs on its own; a misbehaving client
/// only ever loses its own connection. <see cref="StopAsync"/> lets in-flight requests finish before returning;
/// the caller then disposes the images.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>The largest READ or WRITE payload the server accepts, in bytes.</summary>
    public const int MaxPayload = NbdLimits.MaxPayload;

    private readonly NbdServerOptions _options;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _connectionSlots;
    private readonly HashSet<NbdConnection> _connections = [];
    private readonly Lock _lock = new();
    private readonly string? _unixPath;
    private Task? _acceptLoop;
    private int _stopped;
    private long _accepted;

    private NbdServer(NbdServerOptions options, Socket listener)
    {
        _options = options;
        _listener = listener;
        _connectionSlots = new SemaphoreSlim(options.MaxConnections, options.MaxConnections);
        _unixPath = listener.LocalEndPoint is UnixDomainSocketEndPoint unix ? unix.ToString() : null;
        LocalEndPoint = listener.LocalEndPoint!;
    }

    /// <summary>The address the server listens on (with the real port when 0 was asked for).</summary>
    public EndPoint LocalEndPoint { get; }

    /// <summary>Connections accepted since the start.</summary>
    public long AcceptedConnections => Interlocked.Read(ref _accepted);

    /// <summary>Connections open now.</summary>
    public int ConnectionCount { get { lock (_lock) return _connections.Count; } }

    /// <summary>Binds <paramref name="endPoint"/> (an <see cref="IPEndPoint"/> or a <see cref="UnixDomainSocketEndPoint"/>) and starts accepting.</summary>
    /// <exception cref="ArgumentException">The options are inconsistent (no exports, duplicate names, TLS without a certificate).</exception>
    /// <exception cref="SocketException">The address cannot be bound.</exception>
    public static NbdServer Start(EndPoint endPoint, NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        Validate(options);
        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint is not UnixDomainSocketEndPoint) socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endPoint);
            socket.Listen(64);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var server = new NbdServer(options, socket);
        server._acceptLoop = server.AcceptLoopAsync();
        return server;
    }

    private static void Validate(NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Exports.Count == 0) throw new ArgumentException("The server needs at least one export.", nameof(options));
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in options.Exports)
            if (!names.Add(e.Name)) throw new ArgumentException($"The export name '{e.Name}' is given twice.", nameof(options));
        if (options.TlsMode != NbdTlsMode.Off && options.Certificate is null)
            throw new ArgumentException("TLS needs a server certificate.", nameof(options));
        if (options.Certificate is { HasPrivateKey: false })
            throw new ArgumentException("The TLS certificate has no private key.", nameof(options));
        if (options.MaxConnections < 1) throw new ArgumentException($"The connection limit {options.MaxConnections} is not positive.", nameof(options));
        if (options.MaxRequestsInFlight < 1) throw new ArgumentException($"The in-flight limit {options.MaxRequestsInFlight} is not positive.", nameof(options));
        if (options.MaxBufferedBytes < NbdLimits.MaxPayload)
            throw new ArgumentException($"The buffer limit {options.MaxBufferedBytes} is below the {NbdLimits.MaxPayload}-byte maximum request.", nameof(options));
    }

    private async Task AcceptLoopAsync()
    {
        var ct = _stopping.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                await _connectionSlots.WaitAsync(ct).ConfigureAwait(false);
                client = await _listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException && ct.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                // A connection that died before accept completed (ECONNABORTED and the like): keep serving.
                _connectionSlots.Release();
                continue;
            }
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            Interlocked.Increment(ref _accepted);
            var connection = new NbdConnection(client, _options);
            lock (_lock) _connections.Add(connection);
            _ = RunConnectionAsync(connection);
        }
    }

    private async Task RunConnectionAsync(NbdConnection connection)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            lock (_lock) _connections.Remove(connection);
            _connectionSlots.Release();
        }
    }

    /// <summary>
    /// Stops accepting, lets every connection finish the requests it has in flight (new requests are not read),
    /// then closes them. Images are left open for the caller to flush and dispose.
    /// </summary>
    /// <param name="grace">How long connections may take to finish; after it their sockets are closed (requests
    /// already running on the image still complete, their replies are dropped).</param>
    public async Task StopAsync(TimeSpan? grace = null)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        _stopping.Cancel();
        _listener.Dispose();
        if (_acceptLoop != null) await _acceptLoop.ConfigureAwait(false);
        NbdConnection[] open;
        lock (_lock) open = [.. _connections];
        foreach (var c in open) c.Stop();
        var all = Task.WhenAll(open.Select(c => c.Completion));
        if (await Task.WhenAny(all, Task.Delay(grace ?? TimeSpan.FromSeconds(10))).ConfigureAwait(false) != all)
        {
            // A client that stops reading can block its replies forever; do not let it hold up shutdown.
            foreach (var c in open) c.Abort();
            await all.ConfigureAwait(false);
        }
        // Remove the socket file, as qemu-nbd does, so the next start can bind it again.
        if (_unixPath is { Length: > 0 } path && !path.StartsWith('\0'))
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
    }
}
