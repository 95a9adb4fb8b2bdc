using Qed.Storage;

namespace Qed.Formats;

/// <summary>A raw image: guest offset = file offset, size = file length. Holes in the file read as zeroes.</summary>
public sealed class RawImage : DiskImage
{
    private readonly IBlockStorage _file;
    private readonly bool _readOnly;
    private readonly long _size;

    /// <summary>Wraps storage as a raw image whose size is the storage's length now.</summary>
    public RawImage(IBlockStorage file, bool readOnly)
    {
        _file = file;
        _readOnly = readOnly || !file.CanWrite;
        _size = file.Length;
    }

    /// <summary>
    /// Creates a sparse raw image of <paramref name="size"/> bytes, replacing a regular file of that name (as qemu-img
    /// create -f raw). A file in use, or a name that is not a regular file, is refused untouched; on failure the file
    /// is removed only if this call created it.
    /// </summary>
    public static Task CreateAsync(string path, long size, CancellationToken cancellationToken = default)
    {
        if (size < 0) throw new ArgumentException($"Image size must not be negative (size={size})", nameof(size));
        return ImageCreation.WriteNewFileAsync(path, async file =>
        {
            await file.SetLengthAsync(0, cancellationToken).ConfigureAwait(false);
            await file.SetLengthAsync(size, cancellationToken).ConfigureAwait(false);
        });
    }

    /// <inheritdoc />
    public override string Format => "raw";
    /// <inheritdoc />
    public override string Name => _file.Name;
    /// <inheritdoc />
    public override long Size => _size;
    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;
    /// <inheritdoc />
    public override DiskImage? Backing => null;
    /// <inheritdoc />
    public override int ClusterSize => 4096;
    /// <inheritdoc />
    public override long? AllocatedBytes => (_file as FileStorage)?.AllocatedBytes;

    /// <inheritdoc />
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return _file.ReadAsync(offset, buffer, cancellationToken);
    }

    /// <inheritdoc />
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        return _file.WriteAsync(offset, data, cancellationToken);
    }

    /// <inheritdoc />
    public override ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return _file.ZeroRangeAsync(offset, length, cancellationToken);
    }

    /// <inheritdoc />
    public override ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        WriteZeroesAsync(offset, length, cancellationToken);

    /// <inheritdoc />
    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        _readOnly ? ValueTask.CompletedTask : _file.FlushAsync(cancellationToken);

    /// <inheritdoc />
    public override async ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0) return new LayerExtent(offset, 0, ExtentKind.Data, offset);
        var (isData, run) = await _file.GetAllocationAsync(offset, length, cancellationToken).ConfigureAwait(false);
        // qemu-img reports a raw hole as zero with its file offset; the same here.
        return new LayerExtent(offset, Math.Max(1, run), isData ? ExtentKind.Data : ExtentKind.Zero, offset);
    }

    /// <inheritdoc />
    protected override ValueTask DisposeCoreAsync() => _file.DisposeAsync();
}
