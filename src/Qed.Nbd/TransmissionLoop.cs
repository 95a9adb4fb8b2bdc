using System.Buffers;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// The transmission phase of one connection: a reader loop that parses requests, validates them and starts a
/// handler for each, bounded by a count of request slots and a byte budget for payloads, and a
/// <see cref="ReplyWriter"/> that sends the replies in whatever order they complete. Owns the slots, the budget and
/// the writer. It ends after DISC, the end of input or a protocol violation, once every request in flight has
/// finished and its reply was sent (or dropped, when the client is gone).
/// </summary>
internal sealed class TransmissionLoop
{
    private readonly NbdInput _input;
    private readonly NbdSession _session;
    private readonly int _maxInFlight;
    private readonly Action _abort;
    private readonly CancellationToken _stop;
    private readonly SemaphoreSlim _slots;
    private readonly ByteBudget _budget;
    private readonly NbdReplies _replies;
    private readonly NbdCommandHandlers _handlers;

    /// <summary>
    /// Serves <paramref name="session"/>: requests from <paramref name="input"/>, replies to <paramref name="stream"/>.
    /// <paramref name="abort"/> closes the connection at once (a reply that cannot be sent, a client gone).
    /// </summary>
    public TransmissionLoop(NbdInput input, Stream stream, NbdSession session, NbdServerOptions options, Action abort, CancellationToken stop)
    {
        _input = input;
        _session = session;
        _maxInFlight = options.MaxRequestsInFlight;
        _abort = abort;
        _stop = stop;
        _slots = new SemaphoreSlim(_maxInFlight, _maxInFlight);
        _budget = new ByteBudget(options.MaxBufferedBytes);
        // A reply that cannot be sent means the client is gone: close at once, so its reader stops too.
        Writer = new ReplyWriter(stream, _budget, abort);
        _replies = new NbdReplies(Writer, session.Structured);
        _handlers = new NbdCommandHandlers(session, _replies, _budget, _slots, stop);
    }

    /// <summary>The writer the replies go through (its <see cref="ReplyWriter.SendingSince"/> shows a stalled client).</summary>
    public ReplyWriter Writer { get; }

    /// <summary>Serves requests until the loop ends, then drains what is in flight and sends or drops its replies.</summary>
    public async Task RunAsync()
    {
        _input.Replies = Writer;
        bool clientGone;
        try
        {
            Writer.Cork(); // while the reader works through requests it already has (ReplyWriter)
            clientGone = !await ReadRequestsAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A reset, or the end of input in the middle of a request: the client is gone. A protocol violation or
            // shutdown: stop reading; what is in flight still completes and is answered.
            clientGone = e is IOException or System.Net.Sockets.SocketException || _input.AtEnd;
        }
        // A client that closed without DISC reads no replies (qemu-nbd drops them too): close now, so that replies
        // it never reads neither wait for a send nor hold this connection's place.
        if (clientGone) _abort();
        Writer.Uncork();
        // DISC and shutdown end the same way: finish every request in flight and send its reply, then close. After
        // an abort the requests still finish; their replies are dropped.
        for (int i = 0; i < _maxInFlight; i++) await _slots.WaitAsync().ConfigureAwait(false);
        await Writer.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Reads and starts requests until DISC (true) or the end of input (false).</summary>
    private async Task<bool> ReadRequestsAsync()
    {
        while (true)
        {
            await Writer.UncorkedAsync(_slots.WaitAsync(_stop)).ConfigureAwait(false);
            bool started = false;
            try
            {
                if (!await _input.EnsureAsync(NbdRequest.HeaderSize).ConfigureAwait(false)) return false;
                var request = NbdRequest.Parse(_input.Buffered, out uint magic);
                if (magic != NbdMagic.Request)
                    throw new NbdProtocolException($"Bad request magic 0x{magic:x8}."); // also the experimental extended header
                _input.Consume(NbdRequest.HeaderSize);

                if (request.Type == NbdCommand.Disc)
                {
                    // Both reference servers hang up on a DISC with an offset or length; either way no reply.
                    return true;
                }
                (uint error, string message) = RequestValidator.Validate(_session, request);
                if (request.Type == NbdCommand.Write)
                {
                    if (error != 0)
                    {
                        // The payload is always there: consume it to stay in step, then answer.
                        if (request.Length > NbdLimits.MaxDrainedPayload)
                            throw new NbdProtocolException("WRITE payload too large to drain.");
                        await _input.SkipAsync(request.Length).ConfigureAwait(false);
                    }
                    else
                    {
                        await Writer.UncorkedAsync(_budget.AcquireAsync(request.Length, _stop)).ConfigureAwait(false);
                        byte[] payload = ArrayPool<byte>.Shared.Rent((int)request.Length);
                        try
                        {
                            await _input.CopyToAsync(payload.AsMemory(0, (int)request.Length)).ConfigureAwait(false);
                        }
                        catch
                        {
                            ArrayPool<byte>.Shared.Return(payload);
                            _budget.Release(request.Length);
                            throw;
                        }
                        started = true;
                        _ = _handlers.WriteAsync(request, payload);
                        continue;
                    }
                }
                if (error != 0)
                {
                    _replies.Error(request, error, message);
                    continue;
                }
                if (request.Type == NbdCommand.Read)
                {
                    // The slot passes to the handler only once the budget is held: a wait cut short (shutdown, a
                    // client gone) must give the slot back here, or the drain in RunAsync would wait for it for ever.
                    await Writer.UncorkedAsync(_budget.AcquireAsync(request.Length, _stop)).ConfigureAwait(false);
                    started = true;
                    _ = _handlers.ReadAsync(request);
                }
                else
                {
                    started = true;
                    _ = _handlers.ExecuteAsync(request);
                }
            }
            finally
            {
                if (!started) _slots.Release();
            }
        }
    }
}
