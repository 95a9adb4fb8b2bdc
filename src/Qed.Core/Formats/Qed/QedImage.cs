using System.Buffers.Binary;
using System.Numerics;
using Qed.Format;
using Qed.Storage;

namespace Qed;

/// <summary>
/// A QED image: a two-level table (L1 → L2 → data cluster) over one file, with an optional backing image beneath.
/// Thread-safe and positional: reads and in-place writes run concurrently, allocating writes to different clusters
/// proceed concurrently, and metadata reaches the disk in an order that survives a crash at any instant
/// (see QedImage.Write.cs).
/// </summary>
public sealed partial class QedImage : DiskImage
{
    private readonly IBlockStorage _file;
    private volatile DiskImage? _backing;          // null once streamed away (see QedImage.Stream.cs)
    private readonly List<DiskImage> _retiredBackings = new(); // detached, disposed at close: reads may still use them
    private readonly bool _readOnly;
    private QedHeader _header;

    // Geometry, fixed at open.
    private readonly int _clusterSize;
    private readonly int _clusterBits;
    private readonly int _entryBits;          // log2(entries per table)
    private readonly int _entriesPerTable;
    private readonly int _tableBytes;
    private readonly long _headerBytes;
    private long _size; // changes only while the gate is paused (online resize), so a request sees one value

    /// <summary>Pauses requests for maintenance batches (defragment, online resize): see RequestGate.cs.</summary>
    private readonly RequestGate _gate = new();

    private QedImage(IBlockStorage file, QedHeader header, ulong[] l1, DiskImage? backing, string? backingName, bool readOnly, long cacheBudget)
    {
        _cacheBudget = cacheBudget;
        // Write-through storage promises that a completed write is durable, so metadata cannot wait for a flush.
        _writeThrough = file is FileStorage { Cache: CacheMode.WriteThrough or CacheMode.DirectSync };
        _file = file;
        _header = header;
        _l1 = l1;
        _ready = new L2Table?[l1.Length];
        _backing = backing;
        BackingFilename = backingName;
        _readOnly = readOnly;
        _clusterSize = (int)header.ClusterSize;
        _clusterBits = BitOperations.Log2(header.ClusterSize);
        _tableBytes = (int)(header.ClusterSize * header.TableSize);
        _entriesPerTable = _tableBytes / 8;
        _entryBits = BitOperations.Log2((uint)_entriesPerTable);
        _headerBytes = (long)header.HeaderSize * header.ClusterSize;
        _size = (long)header.ImageSize;
        long length = file.Length;
        _fileEnd = length / _clusterSize * _clusterSize;
        _staleEnd = length;
        _extendedTo = length;
        _dataSync = new SyncCoalescer(() => _file.FlushAsync().AsTask());
        _dataBeforeEntries = backing != null;
        // An image still marked NEED_CHECK here was not repaired (read-only, or opened for check itself): its bit
        // stays set until a check clears it.
        _needCheckOnDisk = header.NeedsCheck;
        _keepNeedCheck = header.NeedsCheck;
        IndexTables();
    }

    private readonly bool _keepNeedCheck;
    private readonly bool _writeThrough; // every metadata update is written before the request completes
    // Opened over a backing file: data is made durable before the entries pointing at it are written. Kept after a
    // stream detaches the backing file, for entries of allocations that began before.
    private readonly bool _dataBeforeEntries;

    /// <inheritdoc />
    public override string Format => "qed";

    /// <inheritdoc />
    public override string Name => _file.Name;

    /// <inheritdoc />
    public override long Size => Volatile.Read(ref _size);

    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;

    /// <inheritdoc />
    public override DiskImage? Backing => _backing;

    /// <inheritdoc />
    public override int ClusterSize => _clusterSize;

    /// <summary>The header as it is now (NEED_CHECK and auto-clear bits change while the image is open).</summary>
    public QedHeader Header => _header;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingFilename { get; private set; }

    /// <summary>"raw" when the header forbids probing the backing file (BACKING_FORMAT_NO_PROBE), else null.</summary>
    public string? BackingFormat => (_header.Features & QedFeatures.BackingFormatNoProbe) != 0 && BackingFilename != null ? "raw" : null;

    /// <summary>Whether the NEED_CHECK bit is set on disk or about to be.</summary>
    public bool IsDirty => _header.NeedsCheck;

    /// <inheritdoc />
    public override long? AllocatedBytes => Qed.Storage.HostSize.Of(_file);

    /// <summary>The storage under the image, for tools such as check.</summary>
    internal IBlockStorage Storage => _file;

    /// <summary>
    /// Opens a QED image on <paramref name="file"/>. <paramref name="openBacking"/> is called with the backing name
    /// from the header and the format to force ("raw" under NO_PROBE, else null to probe); without it, or with
    /// <see cref="ImageOpenOptions.NoBacking"/>, the backing chain is not opened.
    /// </summary>
    /// <exception cref="ImageFormatException">The header or L1 table is malformed.</exception>
    public static async Task<QedImage> OpenAsync(IBlockStorage file, ImageOpenOptions? options = null,
        Func<string, string?, CancellationToken, Task<DiskImage>>? openBacking = null, CancellationToken cancellationToken = default)
    {
        options ??= new ImageOpenOptions();
        bool readOnly = options.ReadOnly || !file.CanWrite;
        var headerBytes = new byte[QedHeader.Size];
        await file.ReadAsync(0, headerBytes, cancellationToken).ConfigureAwait(false);
        var header = QedHeader.Parse(headerBytes);
        header.Validate(file.Length);

        string? backingName = null;
        if (header.HasBackingFile)
        {
            var nameBytes = new byte[header.BackingFilenameSize];
            await file.ReadAsync(header.BackingFilenameOffset, nameBytes, cancellationToken).ConfigureAwait(false);
            int nul = Array.IndexOf(nameBytes, (byte)0); // QEMU reads the name as a C string
            backingName = System.Text.Encoding.UTF8.GetString(nameBytes, 0, nul < 0 ? nameBytes.Length : nul);
            if (backingName.Length == 0) backingName = null;
        }

        if (!readOnly && header.AutoclearFeatures != 0)
        {
            // Auto-clear bits belong to features we do not know; a writer that does not maintain them clears them all.
            header = header with { AutoclearFeatures = 0 };
            await WriteHeaderAsync(file, header, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        if (!readOnly && header.NeedsCheck && !options.SkipAutomaticCheck)
            header = await Check.QedChecker.RepairOnOpenAsync(file, header, cancellationToken).ConfigureAwait(false);

        var l1 = await ReadTableAsync(file, (long)header.L1TableOffset, (int)(header.ClusterSize * header.TableSize), cancellationToken).ConfigureAwait(false);

        DiskImage? backing = null;
        if (backingName != null && !options.NoBacking && openBacking != null)
        {
            string? format = (header.Features & QedFeatures.BackingFormatNoProbe) != 0 ? "raw" : null;
            backing = await openBacking(backingName, format, cancellationToken).ConfigureAwait(false);
        }
        return new QedImage(file, header, l1, backing, backingName, readOnly, options.L2CacheBytes);
    }

    /// <summary>Reads a table of little-endian u64 entries.</summary>
    internal static async Task<ulong[]> ReadTableAsync(IBlockStorage file, long offset, int bytes, CancellationToken ct)
    {
        var raw = new byte[bytes];
        await file.ReadAsync(offset, raw, ct).ConfigureAwait(false);
        var entries = new ulong[bytes / 8];
        for (int i = 0; i < entries.Length; i++)
            entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
        return entries;
    }

    /// <summary>Writes the 64-byte header at offset 0 (the backing name after it is left alone).</summary>
    internal static ValueTask WriteHeaderAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var bytes = new byte[QedHeader.Size];
        header.WriteTo(bytes);
        return file.WriteAsync(0, bytes, ct);
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            await StopIdleClearAsync().ConfigureAwait(false);
            if (!_readOnly && _failure == null)
            {
                await WriteBackMetadataAsync().ConfigureAwait(false);
                await TrimExtensionAsync().ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                await ClearNeedCheckIfIdleAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            if (_backing != null) await _backing.DisposeAsync().ConfigureAwait(false);
            foreach (var retired in _retiredBackings) await retired.DisposeAsync().ConfigureAwait(false);
        }
    }
}
