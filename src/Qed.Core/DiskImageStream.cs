namespace Qed;

/// <summary>
/// A seekable <see cref="Stream"/> over a <see cref="DiskImage"/>'s guest bytes, for callers that want one. The
/// stream keeps its own position; the image underneath stays positional, so several streams may share one image.
/// </summary>
/// <remarks>
/// <para>Thread-safety: like any <see cref="Stream"/>, one instance serves one caller at a time (its
/// <see cref="Position"/> is shared state; do not start a read or write before the previous one has completed).
/// The <see cref="DiskImage"/> under it is safe for concurrent callers: give each thread its own stream over the one
/// image, or call the image's positional methods directly.</para>
/// <para>Disposal: as <c>GZipStream</c>, disposing the stream disposes the image (flushing it) unless it was made
/// with <c>leaveOpen: true</c>. Dispose it only once its last read or write has completed; an operation still in
/// flight then may fail (typically with <see cref="ObjectDisposedException"/>) and its data is not flushed.</para>
/// </remarks>
public sealed class DiskImageStream : Stream
{
    private readonly DiskImage _image;
    private readonly bool _leaveOpen;
    private long _position;

    /// <summary>
    /// Wraps <paramref name="image"/>, positioned at 0; disposing the stream disposes the image unless
    /// <paramref name="leaveOpen"/> is true.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="image"/> is null.</exception>
    public DiskImageStream(DiskImage image, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(image);
        _image = image;
        _leaveOpen = leaveOpen;
    }

    /// <inheritdoc />
    public override bool CanRead => true;
    /// <inheritdoc />
    public override bool CanSeek => true;
    /// <inheritdoc />
    public override bool CanWrite => !_image.IsReadOnly;
    /// <inheritdoc />
    public override long Length => _image.Size;

    /// <inheritdoc />
    public override long Position
    {
        get => _position;
        set => _position = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    }

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = (int)Math.Max(0, Math.Min(buffer.Length, _image.Size - _position));
        if (n == 0) return 0;
        await _image.ReadAsync(_position, buffer[..n], cancellationToken).ConfigureAwait(false);
        _position += n;
        return n;
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_position + buffer.Length > _image.Size)
            throw new NotSupportedException($"A write of {buffer.Length} bytes at {_position} would pass the end of the {_image.Size}-byte image.");
        await _image.WriteAsync(_position, buffer, cancellationToken).ConfigureAwait(false);
        _position += buffer.Length;
    }

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override void Flush() => _image.FlushAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) => _image.FlushAsync(cancellationToken).AsTask();

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        _ => _image.Size + offset,
    };

    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException("Resize the image instead.");

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_leaveOpen) _image.Dispose();
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        if (!_leaveOpen) await _image.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}
