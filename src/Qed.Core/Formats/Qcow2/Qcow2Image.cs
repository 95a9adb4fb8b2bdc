using System.Text;
using Qed.Formats.Shared;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Formats.Qcow2;

/// <summary>
/// A qcow2 image (versions 2 and 3): reads every kind of cluster (standard, zero, compressed with deflate, backing),
/// writes standard clusters with refcounts kept so that <c>qemu-img check</c> stays clean. Thread-safe and positional.
/// </summary>
/// <remarks>
/// The façade wiring the components, each owning its state and invariants: <see cref="Qcow2Entries"/> (entry codec and
/// validation), <see cref="Qcow2L2Cache"/> (L2 tables within <see cref="ImageOpenOptions.L2CacheBytes"/>),
/// <see cref="ClusterClaims"/> (allocations in flight, shared with QED), and for writers <see cref="Qcow2Refcounts"/>,
/// <see cref="Qcow2ClusterAllocator"/>, <see cref="Qcow2OverlapGuard"/> (QEMU's overlap checks),
/// <see cref="Qcow2FailureLatch"/> and <see cref="Qcow2WriteBack"/> (flush ordering).
/// <para>Locking: reads and in-place writes to allocated clusters take no lock but the cache's (a lookup). Every
/// metadata change (L1, L2, refcounts, the end of the file) happens under one async lock, <c>_allocLock</c>, owned here
/// and held only for in-memory updates, never while guest data is written; a flush holds it for its whole duration (up
/// to four fsyncs), during which allocating writes wait. The refcounts, allocator, guard and write-back are only ever
/// called under it. Clusters come from the end of the file and are never reused while the image is open, so a reader
/// or writer still holding an old mapping can never touch a cluster that now belongs to someone else.</para>
/// <para>Every write of data or metadata is first checked against the metadata areas (QEMU's overlap checks): one
/// that would land on other metadata fails with <see cref="ImageFormatException"/>, marks the image corrupt, and
/// later writes fail with <see cref="ImageNeedsCheckException"/>.</para>
/// </remarks>
public sealed partial class Qcow2Image : DiskImage
{
    private readonly IBlockStorage _file;
    private readonly DiskImage? _backing;
    private readonly bool _readOnly;
    private readonly Qcow2Header _header;
    private readonly int _clusterBits;
    private readonly int _clusterSize;
    private readonly int _l2Bits;
    private readonly int _l2Entries;
    private readonly long _size;
    private readonly bool _v3;
    private readonly ulong[] _l1;
    /// <summary>The file length rounded up to a cluster when opened: structures may point anywhere below it.</summary>
    private readonly long _openedEnd;
    private readonly Qcow2L2Cache _cache;
    private readonly ClusterClaims _claims = new();
    private readonly Qcow2Inflater _inflater;
    /// <summary>Guards every metadata change; see the remarks.</summary>
    private readonly SemaphoreSlim _allocLock = new(1, 1);

    // Writers only (null when read-only): made at open, after the refcount table is loaded.
    private readonly Qcow2FailureLatch _failure = null!;
    private readonly Qcow2Refcounts _refcounts = null!;
    private readonly Qcow2OverlapGuard _guard = null!;
    private readonly Qcow2ClusterAllocator _allocator = null!;
    private readonly Qcow2WriteBack _writeBack = null!;
    /// <summary>Write-back is forced once dirty L2 tables hold this many bytes, bounding memory between flushes.</summary>
    private readonly long _maxDirtyBytes;

    private Qcow2Image(IBlockStorage file, Qcow2Header header, Qcow2HeaderExtensions extensions, ulong[] l1,
        IReadOnlyList<Qcow2Snapshot> snapshots, DiskImage? backing, string? backingName, bool readOnly,
        long cacheBytes, Qcow2Refcounts? refcounts)
    {
        _file = file;
        _header = header;
        _l1 = l1;
        _backing = backing;
        _readOnly = readOnly;
        BackingFilename = backingName;
        BackingFormatName = backingName == null ? null : extensions.BackingFormat;
        Snapshots = snapshots;
        _clusterBits = (int)header.ClusterBits;
        _clusterSize = header.ClusterSize;
        _l2Bits = _clusterBits - 3;
        _l2Entries = 1 << _l2Bits;
        _size = (long)header.Size;
        _v3 = header.Version >= 3;
        _openedEnd = (file.Length + _clusterSize - 1) / _clusterSize * _clusterSize;
        _cache = new Qcow2L2Cache(_clusterSize, cacheBytes);
        _inflater = new Qcow2Inflater(file, _clusterBits);
        // Dirty tables cannot be evicted: write back before they alone fill the cache (with a floor of a few tables).
        _maxDirtyBytes = Math.Min(MaxDirtyBytes, Math.Max(cacheBytes, (long)Qcow2L2Cache.MinTables * _clusterSize));
        if (refcounts != null)
        {
            _refcounts = refcounts;
            _failure = new Qcow2FailureLatch(file, file.Name, _v3, header.IncompatibleFeatures);
            _guard = new Qcow2OverlapGuard(header, l1, refcounts, _failure, file.Name);
            _allocator = new Qcow2ClusterAllocator(refcounts, _guard, _clusterBits, _openedEnd, file.Name);
            _writeBack = new Qcow2WriteBack(file, refcounts, _allocator, _guard, _cache, l1, (long)header.L1TableOffset, _clusterSize);
        }
    }

    /// <summary>Bytes of L2 tables cached now, and the most ever cached at once (the budget's observable effect).</summary>
    internal (long Now, long HighWater) L2CacheBytes => (_cache.Bytes, _cache.HighWaterBytes);

    /// <inheritdoc />
    public override ImageFormat Format => ImageFormat.Qcow2;

    /// <inheritdoc />
    public override string Name => _file.Name;

    /// <summary>The image's file, for the consistency check of an open image.</summary>
    internal IBlockStorage Storage => _file;

    /// <inheritdoc />
    public override long Size => _size;

    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;

    /// <inheritdoc />
    public override DiskImage? Backing => _backing;

    /// <inheritdoc />
    public override int ClusterSize => _clusterSize;

    /// <inheritdoc />
    public override long? AllocatedBytes => _file.AllocatedBytes;

    /// <summary>The header as read at open (the refcount table may have moved since; see the file).</summary>
    public Qcow2Header Header => _header;

    /// <summary>2 or 3.</summary>
    public int Version => (int)_header.Version;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingFilename { get; }

    /// <summary>
    /// The backing format from the header extension, or null (the backing file is then probed). An extension naming a
    /// format that is no <see cref="ImageFormat"/> (qemu-img records any name it is given) also reads as null here;
    /// opening the backing chain then fails, naming it.
    /// </summary>
    public ImageFormat? BackingFormat => ImageFormatNames.TryParse(BackingFormatName, out var f) ? f : null;

    /// <summary>The backing format's name as the header extension records it, or null (what qemu-img info prints).</summary>
    internal string? BackingFormatName { get; }

    /// <summary>The internal snapshots listed in the image (not used for reads, which follow the active L1 table).</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; }

    /// <summary>Whether the dirty bit (lazy refcounts not yet written back) is set.</summary>
    public bool IsDirty => (_header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0;

    /// <summary>
    /// Creates a qcow2 image file, replacing any file of that name. All options are validated, and the backing file
    /// opened, before the file is touched; if writing fails the file is removed (if this call created it).
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    internal static Task CreateAsync(string path, Qcow2CreateOptions options, CancellationToken cancellationToken = default) =>
        ImageCreation.CreateFileAsync(path, ImageFormat.Qcow2, options, cancellationToken);

    /// <summary>Writes a new, empty qcow2 image onto <paramref name="storage"/> (whose old content is discarded).</summary>
    internal static async Task CreateAsync(IBlockStorage storage, Qcow2CreateOptions options, CancellationToken cancellationToken = default) =>
        await Qcow2Layout.Plan(options, ImageCreation.RequireSize(options)).Writer(storage, cancellationToken).ConfigureAwait(false);

    /// <summary>Resolves a backing name as QEMU does: absolute, or relative to the folder of the image naming it.</summary>
    internal static string ResolveBackingPath(string imagePath, string backingName) => QedImage.ResolveBackingPath(imagePath, backingName);

    /// <summary>
    /// Opens a qcow2 image on <paramref name="file"/>. <paramref name="openBacking"/> is called with the backing name
    /// from the header and the format recorded in the backing format extension (null to probe); without it, or with
    /// <see cref="ImageOpenOptions.NoBacking"/>, the backing chain is not opened.
    /// </summary>
    /// <exception cref="ImageFormatException">The header or a table it points at is malformed.</exception>
    /// <exception cref="NotSupportedException">The image uses encryption, an external data file, subclusters or zstd,
    /// or is opened for writing while it has internal snapshots or a dirty or corrupt bit; or its backing format
    /// extension names a format that is no <see cref="ImageFormat"/> (when the backing chain is opened).</exception>
    public static Task<Qcow2Image> OpenAsync(IBlockStorage file, ImageOpenOptions? options = null,
        Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? openBacking = null, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(file, options, ImageOpener.ByName(openBacking), cancellationToken);

    /// <summary>Opens as <see cref="OpenAsync"/> does; <paramref name="openBacking"/> gets the backing format as the extension names it.</summary>
    internal static async Task<Qcow2Image> OpenCoreAsync(IBlockStorage file, ImageOpenOptions? options,
        Func<string, string?, CancellationToken, Task<DiskImage>>? openBacking, CancellationToken cancellationToken)
    {
        options ??= new ImageOpenOptions();
        bool readOnly = options.ReadOnly || !file.CanWrite;
        long fileLength = file.Length;
        var head = new byte[Qcow2Header.V3WrittenLength];
        await file.ReadAsync(0, head, cancellationToken).ConfigureAwait(false);
        var header = Qcow2Header.Parse(head);
        if (fileLength < Qcow2Header.V2Length)
            throw new ImageFormatException($"The file is {fileLength} bytes, too short for a qcow2 header", "magic", 0);

        byte[]? cluster = null;
        Qcow2HeaderExtensions? extensions = null;
        try
        {
            header.Validate(fileLength);
        }
        catch (ImageFormatException e) when (e.Field == "incompatible_features")
        {
            // Name the unknown features from the image's own feature name table, as the specification intends.
            cluster = await ReadFirstClusterAsync(file, header, cancellationToken).ConfigureAwait(false);
            extensions = Qcow2HeaderExtensions.FromFirstCluster(cluster, header);
            header.Validate(fileLength, extensions.IncompatibleFeatureNames);
            throw;
        }
        cluster ??= await ReadFirstClusterAsync(file, header, cancellationToken).ConfigureAwait(false);
        extensions ??= Qcow2HeaderExtensions.FromFirstCluster(cluster, header);

        string? backingName = null;
        if (header.HasBackingFile)
        {
            var bytes = cluster.AsSpan((int)header.BackingFileOffset, (int)header.BackingFileSize);
            int nul = bytes.IndexOf((byte)0);
            backingName = Encoding.UTF8.GetString(nul < 0 ? bytes : bytes[..nul]);
            if (backingName.Length == 0) backingName = null;
        }

        var snapshots = await Qcow2Snapshot.ReadTableAsync(file, header, fileLength, cancellationToken).ConfigureAwait(false);

        if (!readOnly)
        {
            if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
                throw new ImageFormatException($"'{file.Name}' is marked corrupt; open it read-only or {RepairAdvice.RepairIt}",
                    "incompatible_features", Qcow2Header.IncompatibleOffset);
            if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0)
                throw new NotSupportedException($"'{file.Name}' is marked dirty (lazy refcounts not written back); writing to it needs its refcounts rebuilt first {RepairAdvice.RebuildRefcounts}; it can be opened read-only");
            if (header.NbSnapshots > 0)
                throw new NotSupportedException($"'{file.Name}' has {header.NbSnapshots} internal snapshot(s); writing to qcow2 images with internal snapshots is not supported (open it read-only)");
        }

        var l1 = await Qcow2Entries.ReadAsync(file, (long)header.L1TableOffset, (int)header.L1Size, cancellationToken).ConfigureAwait(false);

        if (!readOnly && header.AutoclearFeatures != 0)
        {
            // A writer that does not maintain auto-clear features (e.g. bitmaps) must clear their bits before writing.
            var zero = new byte[8];
            await file.WriteAsync(Qcow2Header.AutoclearOffset, zero, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
            header = header with { AutoclearFeatures = 0 };
        }

        DiskImage? backing = null;
        if (backingName != null && !options.NoBacking && openBacking != null)
            backing = await openBacking(backingName, extensions.BackingFormat, cancellationToken).ConfigureAwait(false);
        try
        {
            var refcounts = readOnly ? null : await Qcow2Refcounts.LoadAsync(file, header, cancellationToken).ConfigureAwait(false);
            return new Qcow2Image(file, header, extensions, l1, snapshots, backing, backingName, readOnly, options.L2CacheBytes, refcounts);
        }
        catch
        {
            if (backing != null) await backing.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<byte[]> ReadFirstClusterAsync(IBlockStorage file, Qcow2Header header, CancellationToken ct)
    {
        var cluster = new byte[header.ClusterSize];
        await file.ReadAsync(0, cluster, ct).ConfigureAwait(false);
        return cluster;
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            if (!_readOnly && _failure.Failure == null) await FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            if (_backing != null) await _backing.DisposeAsync().ConfigureAwait(false);
        }
    }
}
