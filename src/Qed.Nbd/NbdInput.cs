using System.Buffers;
using System.IO.Pipelines;

namespace Qed.Nbd;

/// <summary>
/// The client's bytes: a <see cref="PipeReader"/> over the connection's stream and the part of its buffer not yet
/// consumed. One reader at a time uses it (the handshake, then the transmission loop). Memory stays bounded: bulk
/// payloads are copied out or skipped piece by piece, never gathered whole in the pipe.
/// </summary>
internal sealed class NbdInput
{
    private readonly CancellationToken _stop;
    private PipeReader _reader;
    private ReadOnlySequence<byte> _buffer;
    private bool _readPending;
    private bool _eof;

    /// <summary>Reads from <paramref name="stream"/> until <paramref name="stop"/> is cancelled.</summary>
    public NbdInput(Stream stream, CancellationToken stop)
    {
        _stop = stop;
        _reader = CreateReader(stream);
    }

    /// <summary>
    /// The transmission phase's reply writer, or null during the handshake: before waiting for the client, the
    /// replies its cork holds go out first (the client may be waiting for them before it sends more).
    /// </summary>
    public ReplyWriter? Replies { get; set; }

    /// <summary>Whether the client's side of the stream has ended (or reading was cancelled).</summary>
    public bool AtEnd => _eof;

    /// <summary>The unconsumed bytes buffered now (at least what the last <see cref="EnsureAsync"/> asked for).</summary>
    public ReadOnlySequence<byte> Buffered => _buffer;

    private static PipeReader CreateReader(Stream stream) =>
        PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));

    /// <summary>Makes at least <paramref name="count"/> unconsumed bytes available; false at end of stream.</summary>
    public async ValueTask<bool> EnsureAsync(long count)
    {
        while (_buffer.Length < count)
        {
            if (_eof) return false;
            if (_readPending) _reader.AdvanceTo(_buffer.Start, _buffer.End);
            // About to wait for the client: the replies it may be waiting for go out first (ReplyWriter's cork).
            var read = _reader.ReadAsync(_stop);
            var result = Replies is { } replies ? await replies.UncorkedAsync(read).ConfigureAwait(false) : await read.ConfigureAwait(false);
            _readPending = true;
            _buffer = result.Buffer;
            _eof = result.IsCompleted || result.IsCanceled;
        }
        return true;
    }

    /// <summary>Like <see cref="EnsureAsync"/>, but the end of the stream in the middle of a message is an error.</summary>
    public async ValueTask RequireAsync(long count)
    {
        if (!await EnsureAsync(count).ConfigureAwait(false))
            throw new NbdProtocolException("The client closed the connection in the middle of a message.");
    }

    /// <summary>Marks the next <paramref name="count"/> buffered bytes (already made available) as consumed.</summary>
    public void Consume(long count) => _buffer = _buffer.Slice(count);

    /// <summary>Copies the next bytes of input into <paramref name="destination"/>, reading as needed (bounded memory).</summary>
    public async ValueTask CopyToAsync(Memory<byte> destination)
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
    public async ValueTask SkipAsync(long count)
    {
        while (count > 0)
        {
            if (_buffer.Length == 0) await RequireAsync(1).ConfigureAwait(false);
            long n = Math.Min(_buffer.Length, count);
            _buffer = _buffer.Slice(n);
            count -= n;
        }
    }

    /// <summary>The big-endian u32 at <paramref name="at"/> in the buffered bytes (made available by the caller).</summary>
    public uint ReadUInt32(int at)
    {
        var reader = new SequenceReader<byte>(_buffer.Slice(at, 4));
        reader.TryReadBigEndian(out int value);
        return (uint)value;
    }

    /// <summary>The big-endian u64 at <paramref name="at"/> in the buffered bytes (made available by the caller).</summary>
    public ulong ReadUInt64(int at)
    {
        var reader = new SequenceReader<byte>(_buffer.Slice(at, 8));
        reader.TryReadBigEndian(out long value);
        return (ulong)value;
    }

    /// <summary>
    /// Drops the current reader and everything it buffered, and reads from <paramref name="stream"/> from now on. Used
    /// when TLS starts: bytes that arrived before the TLS handshake were sent in plaintext and must not be trusted
    /// (the STARTTLS buffering class of bugs).
    /// </summary>
    public async ValueTask ResetAsync(Stream stream)
    {
        if (_readPending) _reader.AdvanceTo(_buffer.End);
        await _reader.CompleteAsync().ConfigureAwait(false);
        _buffer = default;
        _readPending = false;
        _eof = false;
        _reader = CreateReader(stream);
    }

    /// <summary>Completes the reader (the stream itself is the connection's to close).</summary>
    public ValueTask CompleteAsync() => _reader.CompleteAsync();
}
