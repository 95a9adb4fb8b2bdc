namespace Qed;

/// <summary>
/// A guest-visible disk: QED, raw or (later) qcow2, possibly over a backing chain. Every call is positional and the
/// object is safe for many concurrent callers; this is the one core that the CLI, the NBD server and
/// <see cref="DiskImageStream"/> all sit on.
/// </summary>
public abstract partial class DiskImage : IAsyncDisposable, IDisposable
{
    private int _disposed;

    /// <summary>The image's format.</summary>
    public abstract ImageFormat Format { get; }

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

    /// <summary>
    /// Creates an image file of <paramref name="format"/>, replacing any regular file of that name, and returns it open
    /// read-write, holding the file's locks as <see cref="OpenAsync(string, ImageOpenOptions?, CancellationToken)"/>
    /// does (from the creation on: no other opener comes between). Dispose it to close it.
    /// </summary>
    /// <param name="path">The file to create; a relative <see cref="ImageCreateOptions.BackingFile"/> is resolved from its folder.</param>
    /// <param name="format">The format to create.</param>
    /// <param name="options">
    /// <see cref="ImageCreateOptions"/> for the format's defaults, or the format's own options:
    /// <see cref="Formats.Qed.QedCreateOptions"/> for <see cref="ImageFormat.Qed"/>, <see cref="Formats.Qcow2.Qcow2CreateOptions"/>
    /// for <see cref="ImageFormat.Qcow2"/>. With <see cref="BackingFileCheck.None"/> and a backing file, the image is
    /// returned read-only without its backing chain (see <see cref="BackingFileCheck.None"/>).
    /// </param>
    /// <param name="cancellationToken">Cancels the creation; the file is then removed as on failure.</param>
    /// <remarks>
    /// Every option is validated, and the backing file opened (for its size, unless <see cref="BackingFileCheck.None"/>),
    /// before the file is touched. A file in use (locked by QEMU or another opener) or a name that is not a regular file
    /// is refused untouched. If anything fails after that, the file is removed only if this call created it: a name that
    /// existed before is never unlinked (it is then left holding a partial image).
    /// </remarks>
    /// <exception cref="ArgumentException">An option is invalid (the message names it); the options belong to another
    /// format (the message names both); or a raw image is given a backing file or cluster size.</exception>
    /// <exception cref="NotSupportedException">qemu-img makes such an image but this library could not open it (qcow2 extended L2, zstd).</exception>
    /// <exception cref="ImageLockedException">Another opener uses the file.</exception>
    /// <exception cref="FileNotFoundException">The backing file does not exist.</exception>
    public static Task<DiskImage> CreateAsync(string path, ImageFormat format, ImageCreateOptions options, CancellationToken cancellationToken = default) =>
        ImageCreation.CreateAsync(path, format, options, cancellationToken);

    /// <summary>
    /// Writes a new, empty image of <paramref name="format"/> onto <paramref name="storage"/> (such as a
    /// <see cref="Storage.MemoryStorage"/>; its old content is discarded) and returns it open read-write. The image owns
    /// the storage from then on, and disposes it; if this throws, the storage stays the caller's.
    /// </summary>
    /// <param name="storage">Writable storage for the image.</param>
    /// <param name="format">The format to create.</param>
    /// <param name="options">As for the path overload; the storage's <see cref="Storage.IBlockStorage.Name"/> stands for
    /// the path, so a relative <see cref="ImageCreateOptions.BackingFile"/> resolves from the folder it names.</param>
    /// <param name="cancellationToken">Cancels the creation.</param>
    /// <exception cref="ArgumentException">An option is invalid, belongs to another format, or the storage is read-only.</exception>
    /// <exception cref="NotSupportedException">qemu-img makes such an image but this library could not open it (qcow2 extended L2, zstd).</exception>
    public static Task<DiskImage> CreateAsync(Storage.IBlockStorage storage, ImageFormat format, ImageCreateOptions options,
        CancellationToken cancellationToken = default) =>
        ImageCreation.CreateAsync(storage, format, options, cancellationToken);

    /// <summary>
    /// Guesses a file's format from its first bytes as QEMU does: <see cref="ImageFormat.Qed"/> or
    /// <see cref="ImageFormat.Qcow2"/> by magic, anything else <see cref="ImageFormat.Raw"/>. The file is read, not
    /// locked; a probed raw image may hold anything.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static Task<ImageFormat> ProbeFormatAsync(string path, CancellationToken cancellationToken = default) =>
        ImageOpener.ProbeAsync(path, cancellationToken);

    /// <summary>Guesses the format of the image on <paramref name="storage"/> as <see cref="ProbeFormatAsync(string, CancellationToken)"/> does.</summary>
    public static Task<ImageFormat> ProbeFormatAsync(Storage.IBlockStorage storage, CancellationToken cancellationToken = default) =>
        ImageOpener.ProbeAsync(storage, cancellationToken);
}
