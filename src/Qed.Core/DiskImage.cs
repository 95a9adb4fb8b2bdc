namespace Qed;

/// <summary>
/// A guest-visible disk: QED, raw or (later) qcow2, possibly over a backing chain. Every call is positional and the
/// object is safe for many concurrent callers; this is the one core that the CLI, the NBD server and
/// <see cref="DiskImageStream"/> all sit on.
/// </summary>
public abstract partial class DiskImage : IAsyncDisposable, IDisposable
{
    private int _disposed;

    /// <summary>The format name as qemu-img prints it: <c>qed</c>, <c>raw</c>, <c>qcow2</c>.</summary>
    public abstract string Format { get; }

    /// <summary>The path or name the image was opened by.</summary>
    public abstract string Name { get; }

    /// <summary>The guest-visible size in bytes.</summary>
    public abstract long Size { get; }

    /// <summary>Whether writes are refused.</summary>
    public abstract bool IsReadOnly { get; }

    /// <summary>The image under this one, or null.</summary>
    public abstract DiskImage? Backing { get; }

    /// <summary>The granularity of allocation, in bytes (the cluster size; 512 for raw).</summary>
    public abstract int ClusterSize { get; }

    /// <summary>Reads <paramref name="buffer"/>.Length bytes at a guest offset, resolving the backing chain.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the image.</exception>
    /// <exception cref="ImageFormatException">The range maps through a corrupt table entry.</exception>
    public abstract ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes at a guest offset; any offset and length inside the image.</summary>
    public abstract ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    /// <summary>Makes a range read as zeroes, storing zero clusters where whole clusters allow.</summary>
    public abstract ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Tells the image a range's content is no longer needed. Afterwards the range reads as zeroes or as its old
    /// content; host space is released where possible.
    /// </summary>
    public abstract ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>Makes every completed write durable.</summary>
    public abstract ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Describes this layer only (not the backing chain) from <paramref name="offset"/>: the longest run of at most
    /// <paramref name="length"/> bytes with one kind (and, for data, contiguous in the file). Use
    /// <see cref="AllocationMap"/> for the whole chain.
    /// </summary>
    public abstract ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>The bytes the image's file occupies on the host, as qemu-img's actual-size; null if unknown.</summary>
    public virtual long? AllocatedBytes => null;

    /// <summary>Throws unless [offset, offset+length) lies inside the image.</summary>
    protected void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"The range at {offset} of {length} bytes is outside the {Size}-byte image '{Name}'.");
    }

    /// <summary>Throws if the image is read-only.</summary>
    protected void CheckWritable()
    {
        if (IsReadOnly) throw new InvalidOperationException($"The image '{Name}' is open read-only.");
    }

    /// <summary>Releases the image: flushes, marks it clean, closes the file and the backing chain.</summary>
    protected abstract ValueTask DisposeCoreAsync();

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await DisposeCoreAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Opens an image file and its backing chain; the format is probed unless given.</summary>
    public static Task<DiskImage> OpenAsync(string path, ImageOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        ImageOpener.OpenAsync(path, options ?? new ImageOpenOptions(), cancellationToken);

    /// <summary>Guesses a file's format from its first bytes as QEMU does: <c>qed</c> or <c>qcow2</c> by magic, else <c>raw</c>.</summary>
    public static Task<string> ProbeFormatAsync(Storage.IBlockStorage file, CancellationToken cancellationToken = default) =>
        ImageOpener.ProbeAsync(file, cancellationToken);
}
