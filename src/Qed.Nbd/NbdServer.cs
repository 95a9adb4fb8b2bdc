using System.Net;
using System.Net.Sockets;

namespace Qed.Nbd;

/// <summary>
/// A fixed-newstyle NBD server over TCP or a Unix socket. Each connection runs on its own; a misbehaving client
/// only ever loses its own connection. <see cref="StopAsync"/> lets in-flight requests finish before returning;
/// the caller then disposes the images.
/// </summary>
/// <remarks>
/// Thread-safety: the members are safe to call from any thread; <see cref="StopAsync"/> and
/// <see cref="DisposeAsync"/> may be called more than once and concurrently (the first call stops, later ones return
/// at once). The exported images are used by many connections at once, which <see cref="DiskImage"/> allows; the
/// caller may use them alongside the server too. Disposal is <see cref="StopAsync"/> with its default grace: requests
/// in flight finish (or, past the grace, finish with their replies dropped) before it returns. The server never
/// disposes an image: dispose them after it, since an image disposed while the server still runs fails the requests
/// that reach it.
/// </remarks>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>The largest READ or WRITE payload the server accepts, in bytes.</summary>
    public const int MaxPayload = NbdLimits.MaxPayload;

    private readonly NbdServerOptions _options;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConnectionAdmission _admission;
    private readonly Timer? _watchdog;
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
        _admission = new ConnectionAdmission(options.MaxConnections, options.MaxHandshakes);
        if (WatchdogPeriod(options) is { } period) _watchdog = new Timer(_ => CheckLimits(), null, period, period);
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
            if (endPoint is not UnixDomainSocketEndPoint) AllowAddressReuse(socket);
            socket.Bind(endPoint);
            socket.Listen(NbdLimits.ListenBacklog);
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

    /// <summary>
    /// SO_REUSEADDR alone: a restarted server can bind while its old connections sit in TIME_WAIT, but a second server
    /// on the same port fails with "address in use", as qemu-nbd's does. .NET's ReuseAddress also sets SO_REUSEPORT on
    /// Linux, which lets two servers bind one port and share its clients between different images.
    /// </summary>
    private static void AllowAddressReuse(Socket socket)
    {
        if (OperatingSystem.IsLinux())
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
            socket.SetRawSocketOption(0xffff /* SOL_SOCKET */, 4 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        // Windows: SO_REUSEADDR there lets another socket take the port over, and rebinding after TIME_WAIT already works.
    }

    /// <summary>How often the watchdog looks for connections past a limit: a quarter of the shorter one, 50 ms to 1 s.</summary>
    private static TimeSpan? WatchdogPeriod(NbdServerOptions options)
    {
        var limits = new[] { options.HandshakeLimit, options.ReplyStallLimit }.Where(l => l > TimeSpan.Zero).ToArray();
        if (limits.Length == 0) return null;
        return TimeSpan.FromMilliseconds(Math.Clamp(limits.Min().TotalMilliseconds / 4, 50, 1000));
    }

    /// <summary>The watchdog's tick: each connection checks its handshake and reply-stall limits.</summary>
    private void CheckLimits()
    {
        long now = Environment.TickCount64;
        NbdConnection[] open;
        lock (_lock) open = [.. _connections];
        foreach (var c in open) c.CheckLimits(now);
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
        if (options.MaxHandshakes < 1) throw new ArgumentException($"The handshake limit {options.MaxHandshakes} is not positive.", nameof(options));
        if (options.HandshakeLimit < TimeSpan.Zero) throw new ArgumentException($"The handshake time limit {options.HandshakeLimit} is negative.", nameof(options));
        if (options.ReplyStallLimit < TimeSpan.Zero) throw new ArgumentException($"The reply stall limit {options.ReplyStallLimit} is negative.", nameof(options));
        if (options.MaxRequestsInFlight < 1) throw new ArgumentException($"The in-flight limit {options.MaxRequestsInFlight} is not positive.", nameof(options));
        if (options.MaxBufferedBytes < NbdLimits.MaxPayload)
            throw new ArgumentException($"The buffer limit {options.MaxBufferedBytes} is below the {NbdLimits.MaxPayload}-byte maximum request.", nameof(options));
    }

    private async Task AcceptLoopAsync()
    {
        var ct = _stopping.Token;
        var backoff = TimeSpan.Zero;
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                await _admission.WaitToAcceptAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                client = await _listener.AcceptAsync(ct).ConfigureAwait(false);
                backoff = TimeSpan.Zero;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException && ct.IsCancellationRequested)
            {
                _admission.Leave(admitted: false);
                return;
            }
            catch (SocketException e)
            {
                _admission.Leave(admitted: false);
                // A connection that died before accept completed (ECONNABORTED and the like): keep serving.
                if (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset) continue;
                // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS): the connection stays queued and the next accept
                // would fail at once. Back off (10 ms doubling to 1 s) rather than spin, and go on; connections already
                // open keep being served, and accepting resumes once some close.
                backoff = TimeSpan.FromTicks(Math.Clamp(backoff.Ticks * 2, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond));
                try { await Task.Delay(backoff, ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
                continue;
            }
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            Interlocked.Increment(ref _accepted);
            var connection = new NbdConnection(client, _options, _admission);
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
            _admission.Leave(connection.Admitted);
        }
    }

    /// <summary>
    /// Stops accepting, lets every connection finish the requests it has in flight (new requests are not read),
    /// then closes them. Images are left open for the caller to flush and dispose.
    /// </summary>
    /// <param name="grace">How long connections may take to finish; after it their sockets are closed (requests
    /// already running on the image still complete, their replies are dropped).</param>
    /// <param name="cancellationToken">Ends the grace early: the connections are closed at once, as when it runs out.
    /// The server is stopped either way; the call does not throw for it.</param>
    public async Task StopAsync(TimeSpan? grace = null, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        _stopping.Cancel();
        _listener.Dispose();
        if (_acceptLoop != null) await _acceptLoop.ConfigureAwait(false);
        NbdConnection[] open;
        lock (_lock) open = [.. _connections];
        foreach (var c in open) c.Stop();
        var all = Task.WhenAll(open.Select(c => c.Completion));
        if (await Task.WhenAny(all, Task.Delay(grace ?? TimeSpan.FromSeconds(10), cancellationToken)).ConfigureAwait(false) != all)
        {
            // A client that stops reading can block its replies forever; do not let it hold up shutdown.
            foreach (var c in open) c.Abort();
            await all.ConfigureAwait(false);
        }
        if (_watchdog != null) await _watchdog.DisposeAsync().ConfigureAwait(false);
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
