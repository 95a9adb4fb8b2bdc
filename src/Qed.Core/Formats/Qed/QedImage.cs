using Qed.Formats.Qed;
using Qed.Formats.Qed.Maintenance;
using Qed.Formats.Shared;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// A QED image: a two-level table (L1 → L2 → data cluster) over one file, with an optional backing image beneath.
/// Thread-safe and positional: reads and in-place writes run concurrently, allocating writes to different clusters
/// proceed concurrently, and metadata reaches the disk in an order that survives a crash at any instant.
/// </summary>
/// <remarks>
/// The façade: it wires the engine's components (docs/architecture.md draws them), implements <see cref="DiskImage"/>
/// on them, and runs each request inside the request gate that maintenance pauses. The components own their state;
/// the one lock several of them share (the metadata lock: table cache, claims, allocation cursor, dirty set) is
/// created here and handed to them, and used only inside their <c>...Locked</c> methods and the allocation's one
/// section in <see cref="ClusterWriter"/>.
/// </remarks>
public sealed partial class QedImage : DiskImage
{
    private readonly IBlockStorage _file;
    private readonly bool _readOnly;
    private readonly QedGeometry _g;
    private long _size; // changes only while the gate is paused (online resize), so a request sees one value

    /// <summary>Pauses requests for maintenance batches (defragment, online resize).</summary>
    private readonly RequestGate _gate = new();
    private readonly FailureLatch _latch;
    private readonly HeaderWriter _header;
    private readonly BackingChain _backing;
    private readonly L2TableCache _cache;
    private readonly ClusterAllocator _allocator;
    private readonly MetadataWriteBack _writeBack;
    private readonly RecoveryRecordWriter _record;
    private readonly NeedCheckTracker _needCheck;
    private readonly ClusterWriter _writer;
    private readonly Defragmenter _defragmenter;
    private readonly OnlineResizer _resizer;
    private readonly Emptier _emptier;

    private QedImage(IBlockStorage file, QedHeader header, ulong[] l1Entries, DiskImage? backing, string? backingName,
        bool readOnly, long cacheBudget, QedTuning tuning, Check.RecoveryPath recovery, QedRecoveryRecordInfo? recordFound)
    {
        Recovery = recovery;
        RecoveryRecord = recordFound;
        _file = file;
        _readOnly = readOnly;
        _g = new QedGeometry(header);
        _size = (long)header.ImageSize;
        var metaLock = new Lock();
        _latch = new FailureLatch(file.Name);
        _header = new HeaderWriter(file, header, backingName);
        _backing = new BackingChain(backing);
        var l1 = new L1Table(file, _g, l1Entries);
        _allocator = new ClusterAllocator(file, _g.ClusterSize, file.Length, metaLock);
        var validator = new EntryValidator(_g, _allocator, _latch);
        validator.IndexTables(l1);
        // Write-through storage promises that a completed write is durable, so metadata cannot wait for a flush.
        // Opened over a backing file, data is made durable before the entries pointing at it are written; kept after
        // a stream detaches the backing file, for entries of allocations that began before.
        bool writeThrough = file.WritesAreDurable;
        _writeBack = new MetadataWriteBack(file, l1, _latch, metaLock, writeThrough, dataBeforeEntries: backing != null, tuning.SkipDataFlush);
        _cache = new L2TableCache(file, _g, l1, validator, _writeBack, metaLock, cacheBudget);
        // An image still marked NEED_CHECK here was not repaired (read-only, or opened for check itself): its bit
        // stays set until a check clears it; a session that opened it so keeps no record (its bit was cleared at open).
        _record = new RecoveryRecordWriter(_header, enabled: !tuning.NoRecoveryRecord, tuning.RecordOmitsLaterTables);
        _needCheck = new NeedCheckTracker(_header, _record, () => _allocator.FileEnd, keep: header.NeedsCheck, tuning.NeedCheckClearDelay);
        _writer = new ClusterWriter(file, _g, l1, _cache, validator, _allocator, new ClusterClaims(metaLock), _writeBack,
            _needCheck, _backing, metaLock);
        _defragmenter = new Defragmenter(file, _g, l1, _cache, validator, _allocator, _writeBack, _latch, _gate, tuning.DefragBatchBytes);
        _resizer = new OnlineResizer(file, _g, _header, l1, _cache, validator, _allocator, _writeBack, _writer, _backing,
            _latch, _gate, size => Volatile.Write(ref _size, size));
        _emptier = new Emptier(file, _g, l1, _cache, validator, _allocator, _writeBack, _latch, _gate);
    }

    /// <inheritdoc />
    public override ImageFormat Format => ImageFormat.Qed;

    /// <inheritdoc />
    public override string Name => _file.Name;

    /// <inheritdoc />
    public override long Size => Volatile.Read(ref _size);

    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;

    /// <inheritdoc />
    public override DiskImage? Backing => _backing.Current;

    /// <inheritdoc />
    public override int ClusterSize => _g.ClusterSize;

    /// <summary>The header as it is now (NEED_CHECK and auto-clear bits change while the image is open).</summary>
    public QedHeader Header => _header.Current;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingFilename => _header.BackingName;

    /// <summary>
    /// <see cref="ImageFormat.Raw"/> when the header forbids probing the backing file (BACKING_FORMAT_NO_PROBE), else
    /// null (the backing file's format is probed).
    /// </summary>
    public ImageFormat? BackingFormat => (Header.Features & QedFeatures.BackingFormatNoProbe) != 0 && BackingFilename != null ? ImageFormat.Raw : null;

    /// <summary>Whether the NEED_CHECK bit is set on disk or about to be.</summary>
    public bool IsDirty => Header.NeedsCheck;

    /// <summary>
    /// The recovery record found when a read-only open met an image marked NEED_CHECK with the record's bit set, or
    /// null (a read-write open recovers such an image, and the record ends with the recovery).
    /// </summary>
    public QedRecoveryRecordInfo? RecoveryRecord { get; }

    /// <summary>How the open recovered the image (for tests).</summary>
    internal Check.RecoveryPath Recovery { get; }

    /// <summary>L1 indices durable in this session's recovery record (for tests).</summary>
    internal int TablesRecorded => _record.TablesRecorded;

    /// <inheritdoc />
    public override long? AllocatedBytes => _file.AllocatedBytes;

    /// <summary>Format names (qemu-img's) known as backing files.</summary>
    internal static readonly string[] KnownFormats = ["qed", "raw", "qcow2"];

    /// <summary>The storage under the image, for tools such as check.</summary>
    internal IBlockStorage Storage => _file;

    /// <summary>
    /// The file's length without the space grown ahead for new clusters (what closing leaves): the length a check of
    /// the open image judges leaks by.
    /// </summary>
    internal long FileLengthInUse => _allocator.TrimmedLength;

    /// <summary>
    /// Creates a QED image file, replacing any file of that name. All options are validated, and the backing file
    /// opened, before the file is touched; if writing fails the file is removed.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    internal static Task CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        QedImageCreator.CreateAsync(path, options, cancellationToken);

    /// <summary>Writes a new, empty QED image onto <paramref name="storage"/> (whose old content is discarded).</summary>
    internal static Task CreateAsync(IBlockStorage storage, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        QedImageCreator.CreateAsync(storage, options, cancellationToken);

    /// <summary>Resolves a backing name as QEMU does: absolute, or relative to the folder of the image naming it.</summary>
    internal static string ResolveBackingPath(string imagePath, string backingName) => ImageName.ResolveBacking(imagePath, backingName);

    /// <summary>
    /// Opens a QED image on <paramref name="file"/>. <paramref name="openBacking"/> is called with the backing name
    /// from the header and the format to force (<see cref="ImageFormat.Raw"/> under NO_PROBE, else null to probe);
    /// without it, or with <see cref="ImageOpenOptions.NoBacking"/>, the backing chain is not opened.
    /// </summary>
    /// <exception cref="ImageFormatException">The header or L1 table is malformed.</exception>
    public static Task<QedImage> OpenAsync(IBlockStorage file, ImageOpenOptions? options = null,
        Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? openBacking = null, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(file, options, ImageOpener.ByName(openBacking), QedTuning.Default, cancellationToken);

    /// <summary>Opens as the public overload does, with test tuning (<see cref="QedTuning"/>).</summary>
    internal static Task<QedImage> OpenAsync(IBlockStorage file, ImageOpenOptions? options,
        Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? openBacking, QedTuning tuning, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(file, options, ImageOpener.ByName(openBacking), tuning, cancellationToken);

    /// <summary>
    /// Opens as the public overload does, with <paramref name="tuning"/>; <paramref name="openBacking"/> gets the
    /// backing format by qemu-img's name.
    /// </summary>
    internal static async Task<QedImage> OpenCoreAsync(IBlockStorage file, ImageOpenOptions? options,
        Func<string, string?, CancellationToken, Task<DiskImage>>? openBacking, QedTuning tuning, CancellationToken cancellationToken = default)
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

        var recovery = Check.RecoveryPath.None;
        QedRecoveryRecordInfo? recordFound = null;
        if (!readOnly && header.NeedsCheck && !options.SkipAutomaticCheck)
        {
            // Through the recovery record if it can be trusted, else the full check; either clears every auto-clear bit.
            (header, recovery) = await Check.OpenRecovery.RecoverAsync(file, header, useRecord: !tuning.NoRecoveryRecord, cancellationToken).ConfigureAwait(false);
        }
        else if (!readOnly && header.AutoclearFeatures != 0)
        {
            // Auto-clear bits belong to features this session does not maintain (the record starts afresh with the next
            // NEED_CHECK): a writer clears them all.
            header = header with { AutoclearFeatures = 0 };
            await HeaderWriter.WriteAsync(file, header, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        else if (readOnly && header.NeedsCheck && (header.AutoclearFeatures & RecoveryRecordFormat.AutoclearBit) != 0)
        {
            var contents = await Check.OpenRecovery.ReadRecordAsync(file, header, cancellationToken).ConfigureAwait(false);
            recordFound = contents.Valid
                ? new QedRecoveryRecordInfo(true, contents.Tables.Length, contents.CleanFileEnd, null)
                : new QedRecoveryRecordInfo(false, 0, 0, contents.Reason);
        }

        var l1 = await TableCodec.ReadAsync(file, (long)header.L1TableOffset, (int)(header.ClusterSize * header.TableSize), cancellationToken).ConfigureAwait(false);

        DiskImage? backing = null;
        if (backingName != null && !options.NoBacking && openBacking != null)
        {
            string? format = (header.Features & QedFeatures.BackingFormatNoProbe) != 0 ? "raw" : null;
            backing = await openBacking(backingName, format, cancellationToken).ConfigureAwait(false);
        }
        return new QedImage(file, header, l1, backing, backingName, readOnly, options.L2CacheBytes, tuning, recovery, recordFound);
    }

    /// <inheritdoc />
    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            await _needCheck.StopAsync().ConfigureAwait(false);
            if (!_readOnly && _latch.Failure == null)
            {
                await _writeBack.WriteBackAsync().ConfigureAwait(false);
                await _allocator.TrimAsync().ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                await _needCheck.ClearIfIdleAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            await _backing.DisposeAsync().ConfigureAwait(false);
        }
    }
}
