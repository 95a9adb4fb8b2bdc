using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace Qed.Nbd;

/// <summary>
/// One client: the handshake, then the transmission phase. Input is parsed from a <see cref="PipeReader"/>; replies
/// go through a <see cref="ReplyWriter"/>. Any failure ends this connection only.
/// </summary>
internal sealed partial class NbdConnection
{
    private readonly Socket _socket;
    private readonly NbdServerOptions _options;
    private readonly ConnectionAdmission _admission;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Stream _stream = null!;
    private PipeReader _reader = null!;
    private ReadOnlySequence<byte> _buffer;
    private bool _readPending;
    private bool _eof;
    // Environment.TickCount64 by which the handshake must be over; 0 once it is (or while the server makes it wait
    // for a served place), or when there is no limit. Read by the server's watchdog.
    private long _handshakeDeadline;

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
        var replies = Volatile.Read(ref _replies);
        if (replies is null || _options.ReplyStallLimit <= TimeSpan.Zero) return;
        long since = replies.SendingSince;
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

    public async Task RunAsync()
    {
        try
        {
            _stream = new NetworkStream(_socket, ownsSocket: true);
            _reader = CreateReader(_stream);
            var export = await HandshakeAsync().ConfigureAwait(false);
            if (export != null) await TransmitAsync(export).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Protocol violations, resets, TLS failures, cancellation on shutdown: this client is dropped, nobody else
            // notices. There is no console here; the library does no I/O of its own beyond the socket.
        }
        finally
        {
            try { await _reader.CompleteAsync().ConfigureAwait(false); } catch (Exception) { }
            try { await _stream.DisposeAsync().ConfigureAwait(false); } catch (Exception) { }
            _socket.Dispose();
            _completion.TrySetResult();
        }
    }

    private static PipeReader CreateReader(Stream stream) =>
        PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));

    /// <summary>Makes at least <paramref name="count"/> unconsumed bytes available; false at end of stream.</summary>
    private async ValueTask<bool> EnsureAsync(long count)
    {
        while (_buffer.Length < count)
        {
            if (_eof) return false;
            if (_readPending) _reader.AdvanceTo(_buffer.Start, _buffer.End);
            // About to wait for the client: the replies it may be waiting for go out first (ReplyWriter's cork).
            var result = await UncorkedAsync(_reader.ReadAsync(_stop.Token)).ConfigureAwait(false);
            _readPending = true;
            _buffer = result.Buffer;
            _eof = result.IsCompleted || result.IsCanceled;
        }
        return true;
    }

    /// <summary>Like <see cref="EnsureAsync"/>, but the end of the stream in the middle of a message is an error.</summary>
    private async ValueTask RequireAsync(long count)
    {
        if (!await EnsureAsync(count).ConfigureAwait(false))
            throw new NbdProtocolException("The client closed the connection in the middle of a message.");
    }

    /// <summary>Copies the next bytes of input into <paramref name="destination"/>, reading as needed (bounded memory).</summary>
    private async ValueTask CopyInputAsync(Memory<byte> destination)
    {
        while (destination.Length > 0)
        {
            if (_buffer.Length == 0) await RequireAsync(1).ConfigureAwait(false);
            int n = (int)Math.Min(_buffer.Length, destination.Length);
            _buffer.Slice(0, n).CopyTo(destination.Span);
            _buffer = _buffer.Slice(n);
            destination = destination[n..];
        }
    }

    /// <summary>Discards the next <paramref name="count"/> bytes of input (a refused WRITE's payload).</summary>
    private async ValueTask SkipInputAsync(long count)
    {
        while (count > 0)
        {
            if (_buffer.Length == 0) await RequireAsync(1).ConfigureAwait(false);
            long n = Math.Min(_buffer.Length, count);
            _buffer = _buffer.Slice(n);
            count -= n;
        }
    }

    /// <summary>
    /// Drops the current reader and everything it buffered. Used when TLS starts: bytes that arrived before the
    /// TLS handshake were sent in plaintext and must not be trusted (the STARTTLS buffering class of bugs).
    /// </summary>
    private async ValueTask ResetReaderAsync(Stream stream)
    {
        if (_readPending) _reader.AdvanceTo(_buffer.End);
        await _reader.CompleteAsync().ConfigureAwait(false);
        _buffer = default;
        _readPending = false;
        _eof = false;
        _reader = CreateReader(stream);
    }
}
