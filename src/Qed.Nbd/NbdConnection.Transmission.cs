using System.Buffers;
using System.Net.Security;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

// The transmission phase: a reader loop that parses requests and starts a handler for each (bounded by a slot
// count and a byte budget), and a ReplyWriter that sends replies in whatever order they complete.
internal sealed partial class NbdConnection
{
    private const int RequestHeaderSize = 28;
    private SemaphoreSlim _slots = null!;
    private ByteBudget _budget = null!;
    private ReplyWriter _replies = null!;

    private async Task TransmitAsync(NbdExport export)
    {
        _slots = new SemaphoreSlim(_options.MaxRequestsInFlight, _options.MaxRequestsInFlight);
        _budget = new ByteBudget(_options.MaxBufferedBytes);
        // A reply that cannot be sent means the client is gone: close at once, so its reader stops too.
        Volatile.Write(ref _replies, new ReplyWriter(_stream, _budget, Abort));
        bool clientGone;
        try
        {
            _replies.Cork(); // while the reader works through requests it already has (ReplyWriter)
            clientGone = !await ReadRequestsAsync(export).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A reset, or the end of input in the middle of a request: the client is gone. A protocol violation or
            // shutdown: stop reading; what is in flight still completes and is answered.
            clientGone = e is IOException or System.Net.Sockets.SocketException || _eof;
        }
        // A client that closed without DISC reads no replies (qemu-nbd drops them too): close now, so that replies
        // it never reads neither wait for a send nor hold this connection's place.
        if (clientGone) Abort();
        _replies.Uncork();
        // DISC and shutdown end the same way: finish every request in flight and send its reply, then close (TLS
        // first, politely). After Abort the requests still finish; their replies are dropped.
        for (int i = 0; i < _options.MaxRequestsInFlight; i++) await _slots.WaitAsync().ConfigureAwait(false);
        await _replies.CompleteAsync().ConfigureAwait(false);
        if (_stream is SslStream ssl)
        {
            try { await ssl.ShutdownAsync().ConfigureAwait(false); } catch (Exception) { }
        }
    }

    /// <summary>Reads and starts requests until DISC (true) or the end of input (false).</summary>
    private async Task<bool> ReadRequestsAsync(NbdExport export)
    {
        while (true)
        {
            await UncorkedAsync(_slots.WaitAsync(_stop.Token)).ConfigureAwait(false);
            bool started = false;
            try
            {
                if (!await EnsureAsync(RequestHeaderSize).ConfigureAwait(false)) return false;
                var request = ParseRequest(out uint magic);
                if (magic != NbdMagic.Request)
                    throw new NbdProtocolException($"Bad request magic 0x{magic:x8}."); // also the experimental extended header
                _buffer = _buffer.Slice(RequestHeaderSize);

                if (request.Type == NbdCommand.Disc)
                {
                    // Both reference servers hang up on a DISC with an offset or length; either way no reply.
                    return true;
                }
                (uint error, string message) = Validate(export, request);
                if (request.Type == NbdCommand.Write)
                {
                    if (error != 0)
                    {
                        // The payload is always there: consume it to stay in step, then answer.
                        if (request.Length > NbdLimits.MaxDrainedPayload)
                            throw new NbdProtocolException("WRITE payload too large to drain.");
                        await SkipInputAsync(request.Length).ConfigureAwait(false);
                    }
                    else
                    {
                        await UncorkedAsync(_budget.AcquireAsync(request.Length, _stop.Token)).ConfigureAwait(false);
                        byte[] payload = ArrayPool<byte>.Shared.Rent((int)request.Length);
                        try
                        {
                            await CopyInputAsync(payload.AsMemory(0, (int)request.Length)).ConfigureAwait(false);
                        }
                        catch
                        {
                            ArrayPool<byte>.Shared.Return(payload);
                            _budget.Release(request.Length);
                            throw;
                        }
                        started = true;
                        _ = WriteAsync(export, request, payload);
                        continue;
                    }
                }
                if (error != 0)
                {
                    SendError(request, error, message);
                    continue;
                }
                if (request.Type == NbdCommand.Read)
                {
                    // The slot passes to the handler only once the budget is held: a wait cut short (shutdown, a
                    // client gone) must give the slot back here, or the drain below would wait for it for ever.
                    await UncorkedAsync(_budget.AcquireAsync(request.Length, _stop.Token)).ConfigureAwait(false);
                    started = true;
                    _ = ReadAsync(export, request);
                }
                else
                {
                    started = true;
                    _ = ExecuteAsync(export, request);
                }
            }
            finally
            {
                if (!started) _slots.Release();
            }
        }
    }

    /// <summary>
    /// Waits for <paramref name="wait"/>, sending the replies the cork holds first if it must really wait: what it
    /// waits for (a slot, budget, the client's next bytes) may only come once those replies have gone out. Before
    /// transmission (the handshake) there is no reply writer and nothing to send.
    /// </summary>
    private async ValueTask<T> UncorkedAsync<T>(ValueTask<T> wait)
    {
        if (wait.IsCompleted || _replies is null) return await wait.ConfigureAwait(false);
        _replies.Uncork();
        try { return await wait.ConfigureAwait(false); }
        finally { _replies.Cork(); }
    }

    private async ValueTask UncorkedAsync(Task wait)
    {
        if (wait.IsCompleted)
        {
            await wait.ConfigureAwait(false); // observes a fault or cancellation
            return;
        }
        _replies.Uncork();
        try { await wait.ConfigureAwait(false); }
        finally { _replies.Cork(); }
    }

    private ValueTask UncorkedAsync(ValueTask wait) =>
        wait.IsCompletedSuccessfully ? ValueTask.CompletedTask : UncorkedAsync(wait.AsTask());

    private NbdRequest ParseRequest(out uint magic)
    {
        var reader = new SequenceReader<byte>(_buffer.Slice(0, RequestHeaderSize));
        reader.TryReadBigEndian(out int m);
        reader.TryReadBigEndian(out short flags);
        reader.TryReadBigEndian(out short type);
        reader.TryReadBigEndian(out long cookie);
        reader.TryReadBigEndian(out long offset);
        reader.TryReadBigEndian(out int length);
        magic = (uint)m;
        return new NbdRequest((ushort)flags, (ushort)type, (ulong)cookie, (ulong)offset, (uint)length);
    }

    /// <summary>Checks a request against the protocol and the export; returns 0 or the errno to answer with.</summary>
    private (uint Error, string Message) Validate(NbdExport export, in NbdRequest r)
    {
        const ushort known = NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.Df | NbdCommandFlags.ReqOne | NbdCommandFlags.FastZero;
        if ((r.Flags & ~known) != 0) return (NbdError.EINVAL, "unknown command flag");
        ushort allowed = r.Type switch
        {
            NbdCommand.Read => (ushort)(NbdCommandFlags.Fua | (_structured ? NbdCommandFlags.Df : 0)),
            NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim or NbdCommand.Cache => NbdCommandFlags.Fua,
            NbdCommand.WriteZeroes => NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.FastZero,
            NbdCommand.BlockStatus => NbdCommandFlags.Fua | NbdCommandFlags.ReqOne,
            _ => ushort.MaxValue,
        };
        if (allowed == ushort.MaxValue) return (NbdError.EINVAL, "unknown command");
        if ((r.Flags & ~allowed) != 0) return (NbdError.EINVAL, "flag not valid for this command");
        if (r.Type == NbdCommand.Flush)
            return r.Offset != 0 || r.Length != 0 ? (NbdError.EINVAL, "flush with offset or length") : (0, "");

        bool writes = r.Type is NbdCommand.Write or NbdCommand.WriteZeroes or NbdCommand.Trim;
        ulong size = (ulong)export.Image.Size;
        // Unsigned and overflow-free: offset may be anything a u64 holds.
        if (r.Offset > size || r.Length > size - r.Offset)
            return (r.Type is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.ENOSPC : NbdError.EINVAL, "request beyond the end of the export");
        if (r.Type is NbdCommand.Read or NbdCommand.Write && r.Length > NbdLimits.MaxPayload)
            return (NbdError.EINVAL, "request larger than the maximum block size");
        if (writes && export.ReadOnly) return (NbdError.EPERM, "export is read-only");
        if (r.Type == NbdCommand.BlockStatus)
        {
            if (!_structured || _metaContexts.Count == 0) return (NbdError.EINVAL, "no meta context negotiated");
            if (r.Length == 0) return (NbdError.EINVAL, "block status of zero length");
        }
        return (0, "");
    }
}
