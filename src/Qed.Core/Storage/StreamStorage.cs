namespace Qed.Storage;

/// <summary>
/// Storage over a caller's seekable <see cref="Stream"/>, for <see cref="DiskImage.OpenAsync(Stream, ImageOpenOptions?, bool, CancellationToken)"/>.
/// A stream has one position, so the positional calls are serialised: each seeks, then reads or writes, under one
/// async lock. Nothing runs in parallel on it, which is the price of a stream; a file opened by path has none.
/// </summary>
/// <remarks>
/// No locks are taken (the stream's owner decides who else may use it), there is no hole detection (every range
/// reports data) and <see cref="FlushAsync"/> is the stream's own flush (for a <see cref="FileStream"/>, through to
/// the disk). The stream is disposed with the storage unless it was made with <c>leaveOpen</c>.
/// </remarks>
internal sealed class StreamStorage : IBlockStorage
{
    private const int ZeroChunk = 64 * 1024;
    private readonly Stream _stream;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private bool _leaveOpen;
    private int _disposed;

    /// <summary>Wraps <paramref name="stream"/>, which must be readable and seekable; writes only if <paramref name="canWrite"/>.</summary>
    public StreamStorage(Stream stream, bool canWrite, bool leaveOpen)
    {
        if (!stream.CanRead) throw new NotSupportedException("The stream cannot be read (CanRead is false); an image is opened over a readable stream.");
        if (!stream.CanSeek)
            throw new NotSupportedException("The stream cannot seek (CanSeek is false); an image is read and written at any offset, so it needs a seekable stream (copy it to a MemoryStream or a file first).");
        _stream = stream;
        CanWrite = canWrite && stream.CanWrite;
        _leaveOpen = leaveOpen;
        // A FileStream names its file; any other stream is named by its type, for messages.
        Name = stream is FileStream file ? file.Name : $"<{stream.GetType().Name}>";
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool CanWrite { get; }

    /// <inheritdoc />
    public long Length => _stream.Length;

    /// <summary>After a failed open: the caller keeps the stream it passed, so the storage does not dispose it.</summary>
    public void LeaveOpen() => _leaveOpen = true;

    /// <inheritdoc />
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long length = _stream.Length;
            int stored = (int)Math.Clamp(length - offset, 0, buffer.Length);
            if (stored > 0)
            {
                _stream.Position = offset;
                await _stream.ReadExactlyAsync(buffer[..stored], cancellationToken).ConfigureAwait(false);
            }
            buffer.Span[stored..].Clear(); // past the end reads as zeroes
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ThrowIfReadOnly();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Seeking past the end and writing leaves a gap; MemoryStream and FileStream both fill it with zeroes.
            _stream.Position = offset;
            try
            {
                await _stream.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            }
            catch (NotSupportedException e) when (offset + data.Length > _stream.Length)
            {
                throw CannotGrow(offset + data.Length, e);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (!CanWrite) return;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_stream is FileStream file) file.Flush(flushToDisk: true);
            else await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ThrowIfReadOnly();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            SetStreamLength(length);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <inheritdoc />
    /// <remarks>Synchronous, as the growth contract asks: it waits only for the one call on the stream now, which waits
    /// for nothing else.</remarks>
    public ValueTask GrowAsync(long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        _lock.Wait(cancellationToken);
        try
        {
            if (length > _stream.Length) SetStreamLength(length);
        }
        finally
        {
            _lock.Release();
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public async ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ThrowIfReadOnly();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // A stream has no holes to punch: write zeroes over what is stored (past the end already reads as zeroes).
            long end = Math.Min(offset + length, _stream.Length);
            if (end <= offset) return;
            var zeroes = new byte[(int)Math.Min(ZeroChunk, end - offset)];
            _stream.Position = offset;
            for (long at = offset; at < end; at += zeroes.Length)
                await _stream.WriteAsync(zeroes.AsMemory(0, (int)Math.Min(zeroes.Length, end - at)), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <inheritdoc />
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult((true, maxLength)); // a stream cannot tell holes from data

    private void SetStreamLength(long length)
    {
        try
        {
            _stream.SetLength(length);
        }
        catch (NotSupportedException e) when (length > _stream.Length)
        {
            throw CannotGrow(length, e);
        }
    }

    // A MemoryStream made over a byte array keeps that array's length; an image grows as clusters are allocated.
    private NotSupportedException CannotGrow(long length, Exception e) =>
        new($"The stream '{Name}' cannot grow from {_stream.Length} to {length} bytes, which writing the image needs ({e.Message}); give it a stream that can be extended, such as new MemoryStream() with the image copied in.", e);

    private void ThrowIfReadOnly()
    {
        if (!CanWrite) throw new InvalidOperationException($"'{Name}' is open read-only.");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (!_leaveOpen) _stream.Dispose();
        _lock.Dispose();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (!_leaveOpen) await _stream.DisposeAsync().ConfigureAwait(false);
        _lock.Dispose();
    }
}
