using System.Net.Security;
using System.Net.Sockets;

namespace Qed.Nbd;

/// <summary>
/// One client, the thin owner of its parts: the socket and stream, the <see cref="NbdInput"/> they are read
/// through, the <see cref="NbdHandshake"/> that settles an <see cref="NbdSession"/>, then the
/// <see cref="TransmissionLoop"/> that serves it. Holds the limits the server's watchdog checks (handshake deadline,
/// stalled replies) and the served place taken from <see cref="ConnectionAdmission"/>. Any failure ends this
/// connection only.
/// </summary>
internal sealed class NbdConnection
{
    private readonly Socket _socket;
    private readonly NbdServerOptions _options;
    private readonly ConnectionAdmission _admission;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Environment.TickCount64 by which the handshake must be over; 0 once it is (or while the server makes it wait
    // for a served place), or when there is no limit. Read by the server's watchdog.
    private long _handshakeDeadline;
    // Set once transmission starts; read by the server's watchdog.
    private TransmissionLoop? _transmission;

    /// <summary>A connection for an accepted <paramref name="socket"/>, which it owns from now on; its handshake limit starts now.</summary>
    public NbdConnection(Socket socket, NbdServerOptions options, ConnectionAdmission admission)
    {
        _socket = socket;
        _options = options;
        _admission = admission;
        if (options.HandshakeLimit > TimeSpan.Zero)
            _handshakeDeadline = Environment.TickCount64 + (long)Math.Ceiling(options.HandshakeLimit.TotalMilliseconds);
    }

    /// <summary>Completes when the connection is closed.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Whether the connection holds a served place (it chose an export) rather than a handshake place.</summary>
    public bool Admitted { get; private set; }

    /// <summary>
    /// Called by the server's watchdog with <see cref="Environment.TickCount64"/>: closes the connection if its
    /// handshake ran past the limit, or if a reply has been going out without progress for longer than the stall
    /// limit (the client stopped reading, and would otherwise hold its place and its buffers for ever).
    /// </summary>
    public void CheckLimits(long now)
    {
        long deadline = Volatile.Read(ref _handshakeDeadline);
        if (deadline != 0 && now >= deadline)
        {
            Abort();
            return;
        }
        var transmission = Volatile.Read(ref _transmission);
        if (transmission is null || _options.ReplyStallLimit <= TimeSpan.Zero) return;
        long since = transmission.Writer.SendingSince;
        if (since != 0 && now - since >= _options.ReplyStallLimit.TotalMilliseconds) Abort();
    }

    /// <summary>
    /// Takes a served place for the export the client chose, before the reply that starts transmission. The wait is
    /// the server's doing, so the handshake limit no longer runs.
    /// </summary>
    private async ValueTask AdmitAsync()
    {
        Volatile.Write(ref _handshakeDeadline, 0);
        await _admission.AdmitAsync(_stop.Token).ConfigureAwait(false);
        Admitted = true;
    }

    /// <summary>Asks the connection to stop reading; requests in flight still finish and are answered.</summary>
    public void Stop()
    {
        try { _stop.Cancel(); } catch (ObjectDisposedException) { }
    }

    /// <summary>Closes the socket at once: pending reads and writes fail and the connection winds down.</summary>
    public void Abort()
    {
        Stop();
        try { _socket.Close(0); } catch (Exception) { }
    }

    /// <summary>
    /// Handshake, then transmission, then close; never throws (a failure drops this client only), and completes
    /// <see cref="Completion"/> once the socket is closed.
    /// </summary>
    public async Task RunAsync()
    {
        Stream? stream = null;
        NbdInput? input = null;
        NbdHandshake? handshake = null;
        try
        {
            stream = new NetworkStream(_socket, ownsSocket: true);
            input = new NbdInput(stream, _stop.Token);
            handshake = new NbdHandshake(stream, input, _options, AdmitAsync, _stop.Token);
            var session = await handshake.RunAsync().ConfigureAwait(false);
            if (session != null)
            {
                var transmission = new TransmissionLoop(input, handshake.Stream, session, _options, Abort, _stop.Token);
                Volatile.Write(ref _transmission, transmission);
                await transmission.RunAsync().ConfigureAwait(false);
                // Every reply is out: close TLS politely before the socket.
                if (handshake.Stream is SslStream ssl)
                {
                    try { await ssl.ShutdownAsync().ConfigureAwait(false); } catch (Exception) { }
                }
            }
        }
        catch (Exception)
        {
            // Protocol violations, resets, TLS failures, cancellation on shutdown: this client is dropped, nobody else
            // notices. There is no console here; the library does no I/O of its own beyond the socket.
        }
        finally
        {
            try { if (input != null) await input.CompleteAsync().ConfigureAwait(false); } catch (Exception) { }
            // The TLS stream once STARTTLS succeeded (it owns the network stream under it).
            try { if ((handshake?.Stream ?? stream) is { } s) await s.DisposeAsync().ConfigureAwait(false); } catch (Exception) { }
            _socket.Dispose();
            _completion.TrySetResult();
        }
    }
}
