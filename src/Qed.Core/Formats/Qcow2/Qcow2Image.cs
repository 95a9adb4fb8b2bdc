using System.Buffers.Binary;
using System.Text;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>
/// A qcow2 image (versions 2 and 3): reads every kind of cluster (standard, zero, compressed with deflate, backing),
/// writes standard clusters with refcounts kept so that <c>qemu-img check</c> stays clean. Thread-safe and positional.
/// </summary>
/// <remarks>
/// Locking: reads and in-place writes to allocated clusters take no lock. Every metadata change (L1, L2, refcounts,
/// the end of the file) happens under one async lock, <c>_allocLock</c>, held only for in-memory updates, never while
/// guest data is written; a flush holds it for its whole duration (up to four fsyncs), during which allocating writes
/// wait. Clusters come from the end of the file and are never reused while the image is open, so a reader or writer
/// still holding an old mapping can never touch a cluster that now belongs to someone else.
/// <para>Every write of data or metadata is first checked against the metadata areas (QEMU's overlap checks): one
/// that would land on other metadata fails with <see cref="ImageFormatException"/>, marks the image corrupt, and
/// later writes fail with <see cref="ImageNeedsCheckException"/> (see Qcow2Image.Overlap.cs).</para>
/// </remarks>
public sealed partial class Qcow2Image : DiskImage
{
    private const ulong CopiedFlag = 1UL << 63;
    private const ulong CompressedFlag = 1UL << 62;
    private const ulong ZeroFlag = 1;
    private const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

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

    private Qcow2Image(IBlockStorage file, Qcow2Header header, Qcow2HeaderExtensions extensions, ulong[] l1,
        IReadOnlyList<Qcow2Snapshot> snapshots, DiskImage? backing, string? backingName, bool readOnly)
    {
        _file = file;
        _header = header;
        _l1 = l1;
        _backing = backing;
        _readOnly = readOnly;
        BackingFilename = backingName;
        BackingFormat = backingName == null ? null : extensions.BackingFormat;
        Snapshots = snapshots;
        _clusterBits = (int)header.ClusterBits;
        _clusterSize = header.ClusterSize;
        _l2Bits = _clusterBits - 3;
        _l2Entries = 1 << _l2Bits;
        _size = (long)header.Size;
        _v3 = header.Version >= 3;
        _openedEnd = (file.Length + _clusterSize - 1) / _clusterSize * _clusterSize;
        _nextFree = _openedEnd;
        _l2CacheLimit = Math.Max(64, (32 << 20) / _clusterSize);
    }

    /// <inheritdoc />
    public override string Format => "qcow2";

    /// <inheritdoc />
    public override string Name => _file.Name;

    /// <inheritdoc />
    public override long Size => _size;

    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;

    /// <inheritdoc />
    public override DiskImage? Backing => _backing;

    /// <inheritdoc />
    public override int ClusterSize => _clusterSize;

    /// <inheritdoc />
    public override long? AllocatedBytes => HostSize.Of(_file);

    /// <summary>The header as read at open (the refcount table may have moved since; see the file).</summary>
    public Qcow2Header Header => _header;

    /// <summary>2 or 3.</summary>
    public int Version => (int)_header.Version;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingFilename { get; }

    /// <summary>The backing format from the header extension, or null (the backing file is then probed).</summary>
    public string? BackingFormat { get; }

    /// <summary>The internal snapshots listed in the image (not used for reads, which follow the active L1 table).</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; }

    /// <summary>Whether the dirty bit (lazy refcounts not yet written back) is set.</summary>
    public bool IsDirty => (_header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0;

    /// <summary>Resolves a backing name as QEMU does: absolute, or relative to the folder of the image naming it.</summary>
    public static string ResolveBackingPath(string imagePath, string backingName) => QedImage.ResolveBackingPath(imagePath, backingName);

    /// <summary>
    /// Opens a qcow2 image on <paramref name="file"/>. <paramref name="openBacking"/> is called with the backing name
    /// from the header and the format recorded in the backing format extension (null to probe); without it, or with
    /// <see cref="ImageOpenOptions.NoBacking"/>, the backing chain is not opened.
    /// </summary>
    /// <exception cref="ImageFormatException">The header or a table it points at is malformed.</exception>
    /// <exception cref="NotSupportedException">The image uses encryption, an external data file, subclusters or zstd,
    /// or is opened for writing while it has internal snapshots or a dirty or corrupt bit.</exception>
    public static async Task<Qcow2Image> OpenAsync(IBlockStorage file, ImageOpenOptions? options = null,
        Func<string, string?, CancellationToken, Task<DiskImage>>? openBacking = null, CancellationToken cancellationToken = default)
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
            extensions = ParseExtensions(cluster, header);
            header.Validate(fileLength, extensions.IncompatibleFeatureNames);
            throw;
        }
        cluster ??= await ReadFirstClusterAsync(file, header, cancellationToken).ConfigureAwait(false);
        extensions ??= ParseExtensions(cluster, header);

        string? backingName = null;
        if (header.HasBackingFile)
        {
            var bytes = cluster.AsSpan((int)header.BackingFileOffset, (int)header.BackingFileSize);
            int nul = bytes.IndexOf((byte)0);
            backingName = Encoding.UTF8.GetString(nul < 0 ? bytes : bytes[..nul]);
            if (backingName.Length == 0) backingName = null;
        }

        var snapshots = await ReadSnapshotsAsync(file, header, fileLength, cancellationToken).ConfigureAwait(false);

        if (!readOnly)
        {
            if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
                throw new ImageFormatException($"'{file.Name}' is marked corrupt; open it read-only or repair it with 'qemu-img check -r all'",
                    "incompatible_features", Qcow2Header.IncompatibleOffset);
            if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0)
                throw new NotSupportedException($"'{file.Name}' is marked dirty (lazy refcounts not written back); writing to it needs its refcounts rebuilt first ('qemu-img check -r all'); it can be opened read-only");
            if (header.NbSnapshots > 0)
                throw new NotSupportedException($"'{file.Name}' has {header.NbSnapshots} internal snapshot(s); writing to qcow2 images with internal snapshots is not supported (open it read-only)");
        }

        var l1 = await ReadEntriesAsync(file, (long)header.L1TableOffset, (int)header.L1Size, cancellationToken).ConfigureAwait(false);

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
            var image = new Qcow2Image(file, header, extensions, l1, snapshots, backing, backingName, readOnly);
            if (!readOnly)
            {
                await image.LoadRefcountTableAsync(cancellationToken).ConfigureAwait(false);
                image.BuildMetadataMap();
            }
            return image;
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

    private static Qcow2HeaderExtensions ParseExtensions(byte[] cluster, Qcow2Header header)
    {
        int start = (int)header.HeaderLength;
        int limit = cluster.Length;
        // The backing name sits after the extensions; they must not run into it.
        if (header.HasBackingFile && header.BackingFileOffset >= (ulong)start && header.BackingFileOffset < (ulong)limit)
            limit = (int)header.BackingFileOffset;
        return Qcow2HeaderExtensions.Parse(cluster, start, limit);
    }

    private static async Task<IReadOnlyList<Qcow2Snapshot>> ReadSnapshotsAsync(IBlockStorage file, Qcow2Header header, long fileLength, CancellationToken ct)
    {
        if (header.NbSnapshots == 0) return [];
        long available = Math.Min(fileLength - (long)header.SnapshotsOffset, Qcow2Snapshot.MaxTableBytes);
        // Entries have variable length: read a window and widen it only as far as the entries actually reach.
        long window = Math.Min(available, 64 * 1024);
        while (true)
        {
            var bytes = new byte[window];
            await file.ReadAsync((long)header.SnapshotsOffset, bytes, ct).ConfigureAwait(false);
            try
            {
                return Qcow2Snapshot.ParseTable(bytes, (int)header.NbSnapshots, (long)header.SnapshotsOffset);
            }
            catch (ImageFormatException) when (window < available)
            {
                window = Math.Min(available, window * 4);
            }
        }
    }

    /// <summary>Reads <paramref name="count"/> big-endian u64 entries.</summary>
    internal static async Task<ulong[]> ReadEntriesAsync(IBlockStorage file, long offset, int count, CancellationToken ct)
    {
        var raw = new byte[count * 8L];
        await file.ReadAsync(offset, raw, ct).ConfigureAwait(false);
        var entries = new ulong[count];
        for (int i = 0; i < count; i++)
            entries[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return entries;
    }

    /// <summary>Encodes entries [first, first+count) as big-endian bytes.</summary>
    internal static byte[] EncodeEntries(ulong[] entries, int first, int count)
    {
        var bytes = new byte[count * 8L];
        for (int i = 0; i < count; i++)
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), Volatile.Read(ref entries[first + i]));
        return bytes;
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            if (!_readOnly && _failure == null) await FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            if (_backing != null) await _backing.DisposeAsync().ConfigureAwait(false);
        }
    }
}
