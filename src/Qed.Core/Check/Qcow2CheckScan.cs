using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Check;

/// <summary>What a repair may do to an entry the scan found it cannot leave as it is.</summary>
internal enum Qcow2EntryFix
{
    /// <summary>An L2 entry whose bytes cannot be followed (unaligned, past the end of the file, inside other
    /// metadata): it gets a new cluster holding the bytes it names now (zeroes past the end of the file).</summary>
    CopyData,
    /// <summary>An L1 entry naming a cluster of other metadata (L1, refcount table or block, header, snapshot table):
    /// it gets a new L2 table holding the bytes that cluster has now.</summary>
    CopyTable,
    /// <summary>An L1 entry wholly past the end of the file: it reads as an empty table, so it is cleared.</summary>
    ClearL1,
    /// <summary>A preallocated zero cluster whose offset cannot be followed: it becomes a plain zero cluster.</summary>
    PlainZero,
    /// <summary>A compressed entry with the copied flag (which reads fail on): the flag is cleared.</summary>
    ClearCopied,
}

/// <summary>One entry a repair changes: where the entry is in the file, what it holds, what the repair does.</summary>
internal readonly record struct Qcow2EntryRepair(long EntryOffset, ulong Entry, Qcow2EntryFix Fix, string Why);

/// <summary>A cluster whose refcount on disk differs from the references to it.</summary>
internal readonly record struct Qcow2Mismatch(long Cluster, ulong Refcount, ulong References);

/// <summary>
/// One read-only pass of the qcow2 check: rebuilds the references to every host cluster from the metadata (header,
/// active and snapshot L1 and L2 tables, snapshot table, refcount table and blocks), compares them with the refcounts
/// on disk, checks the copied flags of the active tables, and collects what a repair would change. Counters, order of
/// discovery and messages follow <c>qemu-img check</c> on qcow2 (observed on QEMU 7.2).
/// </summary>
/// <remarks>
/// Memory: the refcount table (at most 8 MiB, the header's limit), one L1 table at a time (at most 32 MiB), a few
/// refcount blocks and L2 tables, and one reference count per referenced cluster: bounded by the metadata in the
/// file, never by the virtual size. A pass changes nothing in the file.
/// </remarks>
internal sealed class Qcow2CheckScan
{
    /// <summary>Bits 56-62 and 0-8 of an L1 entry, reserved.</summary>
    private const ulong L1ReservedMask = 0x7f00_0000_0000_01ffUL;
    /// <summary>A refcount table entry's offset bits (9-63; bits 0-8 are reserved).</summary>
    private const ulong RefTableOffsetMask = ~Qcow2Entries.RefTableReservedMask;
    /// <summary>Refcount blocks kept while scanning; the compare walks clusters in order, so a few suffice.</summary>
    private const int CachedBlocks = 64;

    private readonly IBlockStorage _file;
    private readonly Qcow2Header _header;
    private readonly Qcow2Refcounts _refcounts;
    private readonly int _bits;
    private readonly int _cs;
    private readonly long _fileLength;
    private readonly bool _forRebuild;
    private readonly SparseBitmap _tables = new();
    private readonly SparseBitmap _otherMetadata = new();
    private readonly Dictionary<long, Qcow2RefcountBlock?> _blockCache = new();
    private long _nbClusters;
    /// <summary>Set by <see cref="Count"/> when a reference did not fit the refcount width.</summary>
    private bool _overflowed;
    /// <summary>Active L2 tables whose entries were considered for repair (a table two L1 entries share, once).</summary>
    private readonly HashSet<long> _repairedTables = new();

    private Qcow2CheckScan(IBlockStorage file, Qcow2Header header, Qcow2Refcounts refcounts, bool forRebuild)
    {
        _file = file;
        _header = header;
        _refcounts = refcounts;
        _bits = (int)header.ClusterBits;
        _cs = header.ClusterSize;
        _fileLength = file.Length;
        _nbClusters = (_fileLength + _cs - 1) / _cs;
        _forRebuild = forRebuild;
        References = new Qcow2References(1 << (int)header.RefcountOrder);
    }

    /// <summary>The counters and messages, qemu-img's.</summary>
    public ImageCheckResult Result { get; } = new() { Format = ImageFormat.Qcow2 };
    /// <summary>The references rebuilt from the metadata.</summary>
    public Qcow2References References { get; }
    /// <summary>Whether the refcount structure must be rebuilt to be repaired (a used cluster has refcount 0, or a
    /// refcount block cannot be followed or is shared).</summary>
    public bool NeedsRebuild { get; private set; }
    /// <summary>Whether a refcount table entry names a block outside the image (a rebuild with <c>-r all</c> fixes it).</summary>
    public bool BlockOutsideImage { get; private set; }
    /// <summary>Corruptions found by the refcount comparison and the refcount block checks (what a rebuild fixes).</summary>
    public long RefcountCorruptions { get; private set; }
    /// <summary>Clusters whose refcount differs from their references.</summary>
    public List<Qcow2Mismatch> Mismatches { get; } = new();
    /// <summary>Active-table entries a repair of type <c>-r all</c> changes before it fixes refcounts.</summary>
    public List<Qcow2EntryRepair> EntryRepairs { get; } = new();
    /// <summary>Active-table entries whose copied flag disagrees with the refcount: where, and the corrected entry.</summary>
    public List<(long EntryOffset, ulong Entry, ulong Corrected, string What)> CopiedFixes { get; } = new();
    /// <summary>The refcount table as loaded (for in-place repairs).</summary>
    public Qcow2Refcounts Refcounts => _refcounts;

    /// <summary>
    /// Runs one pass. With <paramref name="forRebuild"/>, only the references of everything but the refcount
    /// structure are counted (what a new refcount structure must hold), and nothing is compared.
    /// </summary>
    public static async Task<Qcow2CheckScan> RunAsync(IBlockStorage file, Qcow2Header header, bool forRebuild, CancellationToken ct)
    {
        var refcounts = await Qcow2Refcounts.LoadAsync(file, header, ct).ConfigureAwait(false);
        var scan = new Qcow2CheckScan(file, header, refcounts, forRebuild);
        await scan.RunAsync(ct).ConfigureAwait(false);
        return scan;
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var h = _header;
        Result.TotalClusters = (long)((h.Size + (ulong)_cs - 1) / (ulong)_cs);
        var snapshots = await Qcow2Snapshot.ReadTableAsync(_file, h, _fileLength, ct).ConfigureAwait(false);
        long snapshotTableBytes = await SnapshotTableBytesAsync(ct).ConfigureAwait(false);
        await MapMetadataAsync(snapshots, snapshotTableBytes, ct).ConfigureAwait(false);

        Count(0, _cs);
        await WalkL1Async((long)h.L1TableOffset, h.L1Size, active: true, 1, ct).ConfigureAwait(false);
        // Snapshots naming the same L1 table are walked once, their references counted as many times as named:
        // the work follows the distinct tables in the file, never how often a (hostile) table names them.
        var distinct = new List<(long Offset, uint Size)>();
        var times = new Dictionary<(long, uint), ulong>();
        foreach (var sn in snapshots)
        {
            if (sn.L1TableOffset % (ulong)_cs != 0)
            {
                Corruption($"ERROR snapshot {sn.Id} ({sn.Name}) l1_offset=0x{sn.L1TableOffset:x}: L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }
            if ((long)sn.L1Size * 8 > Qcow2Header.MaxL1Bytes)
            {
                Corruption($"ERROR snapshot {sn.Id} ({sn.Name}) l1_size=0x{sn.L1Size:x}: L1 table is too large; snapshot table entry corrupted");
                continue;
            }
            var key = ((long)sn.L1TableOffset, sn.L1Size);
            if (times.TryGetValue(key, out ulong n)) times[key] = n + 1;
            else { times[key] = 1; distinct.Add(key); }
        }
        foreach (var key in distinct)
            await WalkL1Async(key.Offset, key.Size, active: false, times[key], ct).ConfigureAwait(false);
        ReplaySharedTables();
        Count((long)h.SnapshotsOffset, snapshotTableBytes);
        if (_forRebuild) return;

        Count(_refcounts.TableOffset, (long)_refcounts.TableClusters * _cs);
        CheckRefcountBlocks();
        await CompareAsync(ct).ConfigureAwait(false);
        await CheckCopiedFlagsAsync(ct).ConfigureAwait(false);
        if (_unlisted > 0) Result.MessageList.Add($"({_unlisted} more problems not listed)");
    }

    /// <summary>The snapshot table's bytes: each entry's fixed part, extra data, ID and name, padded to 8 bytes.</summary>
    private async Task<long> SnapshotTableBytesAsync(CancellationToken ct)
    {
        long at = (long)_header.SnapshotsOffset, start = at;
        var fixedPart = new byte[Qcow2Snapshot.FixedSize];
        for (uint i = 0; i < _header.NbSnapshots; i++)
        {
            await _file.ReadAsync(at, fixedPart, ct).ConfigureAwait(false);
            long length = Qcow2Snapshot.FixedSize + BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(36))
                + BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(12)) + BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
            at += (length + 7) & ~7L;
        }
        return at - start;
    }

    /// <summary>
    /// Marks which clusters hold metadata before anything is counted, so that a data entry (or an L2 table) found
    /// early can be told apart from a table found later in the same cluster.
    /// </summary>
    private async Task MapMetadataAsync(IReadOnlyList<Qcow2Snapshot> snapshots, long snapshotTableBytes, CancellationToken ct)
    {
        MarkRange(_otherMetadata, 0, _cs);
        MarkRange(_otherMetadata, _refcounts.TableOffset, (long)_refcounts.TableClusters * _cs);
        for (long i = 0; i < _refcounts.TableLength; i++)
        {
            ulong entry = _refcounts.EntryAt(i) & RefTableOffsetMask;
            if (entry != 0 && entry % (ulong)_cs == 0) MarkRange(_otherMetadata, (long)entry, _cs);
        }
        if (_header.NbSnapshots > 0) MarkRange(_otherMetadata, (long)_header.SnapshotsOffset, snapshotTableBytes);
        var l1s = new List<(long Offset, uint Size)> { ((long)_header.L1TableOffset, _header.L1Size) };
        foreach (var sn in snapshots)
            if (sn.L1TableOffset % (ulong)_cs == 0 && (long)sn.L1Size * 8 <= Qcow2Header.MaxL1Bytes) l1s.Add(((long)sn.L1TableOffset, sn.L1Size));
        foreach (var (offset, size) in l1s) MarkRange(_otherMetadata, offset, size * 8L);
        foreach (var (offset, size) in l1s.Distinct())
        {
            if (size == 0 || !Inside(offset, size * 8L)) continue;
            var l1 = await Qcow2Entries.ReadAsync(_file, offset, (int)size, ct).ConfigureAwait(false);
            foreach (ulong entry in l1)
            {
                long l2 = (long)(entry & Qcow2Entries.OffsetMask);
                if (l2 != 0 && l2 % _cs == 0 && l2 < _fileLength) _tables.Set(l2 >> _bits);
            }
        }
    }

    private void MarkRange(SparseBitmap map, long offset, long bytes)
    {
        if (bytes <= 0 || !Inside(offset, bytes)) return;
        for (long c = offset >> _bits; c <= (offset + bytes - 1) >> _bits; c++) map.Set(c);
    }

    /// <summary>Whether [offset, +bytes) ends less than a cluster past the end of the file (qemu-img's rule: the last
    /// cluster may be partly written).</summary>
    private bool Inside(long offset, long bytes) => offset >= 0 && offset + bytes - _fileLength < _cs;

    /// <summary>Problems listed one by one; a hostile image can make millions, which are counted instead.</summary>
    private const int MaxMessages = 1000;
    private long _unlisted;

    private void Message(string message)
    {
        if (Result.Messages.Count < MaxMessages) Result.MessageList.Add(message);
        else _unlisted++;
    }

    private void Corruption(string message, ulong times = 1)
    {
        Result.Corruptions += (long)times;
        Message(times == 1 ? message : $"{message} ({times} times: a table named that often)");
    }

    /// <summary>Counts <paramref name="times"/> references to every cluster [offset, +bytes) touches; false when the
    /// range lies a cluster or more past the end of the file (a corruption: nothing is counted).</summary>
    private bool Count(long offset, long bytes, ulong times = 1)
    {
        if (bytes <= 0) return true;
        if (!Inside(offset, bytes))
        {
            Corruption($"ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x{offset:x} size 0x{bytes:x}", times);
            return false;
        }
        for (long c = offset >> _bits; c <= (offset + bytes - 1) >> _bits; c++)
        {
            if (c >= _nbClusters) _nbClusters = c + 1;
            ulong overflow = References.Add(c, times);
            if (overflow > 0)
            {
                _overflowed = true;
                _overflowCorruptions += (long)overflow;
                Corruption($"ERROR: overflow cluster offset=0x{c << _bits:x}", overflow);
                Message("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing");
            }
        }
        return true;
    }

    /// <summary>What walking one L2 table counted, to count again for each further time a table names it.</summary>
    private sealed class L2Walk
    {
        public readonly List<(long Offset, long Bytes)> Ranges = new();
        public long Corruptions, Allocated, Fragmented, Compressed;
        public ulong Extra;
    }

    /// <summary>Walked L2 tables by (offset, active): each distinct table is walked once per kind.</summary>
    private readonly Dictionary<(long, bool), L2Walk> _walked = new();
    private L2Walk? _recording;
    private long _overflowCorruptions;

    /// <summary>Counts the references of every L2 table named more than once as many more times as it was named.</summary>
    private void ReplaySharedTables()
    {
        foreach (var ((offset, active), walk) in _walked)
        {
            if (walk.Extra == 0) continue;
            foreach (var (at, bytes) in walk.Ranges) Count(at, bytes, walk.Extra);
            Result.Corruptions += walk.Corruptions * (long)walk.Extra;
            if (walk.Corruptions > 0)
                Message($"ERROR the L2 table at 0x{offset:x} is named {walk.Extra} more time(s): its {walk.Corruptions} error(s) count each time");
            if (!active) continue;
            Result.AllocatedClusters += walk.Allocated * (long)walk.Extra;
            Result.FragmentedClusters += walk.Fragmented * (long)walk.Extra;
            Result.CompressedClusters += walk.Compressed * (long)walk.Extra;
        }
        _walked.Clear();
    }

    private async Task WalkL1Async(long l1Offset, uint l1Size, bool active, ulong times, CancellationToken ct)
    {
        if (l1Size == 0) return;
        if (!Count(l1Offset, l1Size * 8L, times)) return; // past the end of the file: it would read as an empty table
        var l1 = await Qcow2Entries.ReadAsync(_file, l1Offset, (int)l1Size, ct).ConfigureAwait(false);
        for (int i = 0; i < l1.Length; i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong entry = l1[i];
            if (entry == 0) continue;
            if ((entry & L1ReservedMask) != 0) Corruption($"ERROR found L1 entry with reserved bits set: {entry:x}", times);
            long l2 = (long)(entry & Qcow2Entries.OffsetMask);
            long entryOffset = l1Offset + 8L * i;
            bool inside = Count(l2, _cs, times);
            bool aligned = l2 % _cs == 0;
            if (!aligned) Corruption($"ERROR l2_offset={l2:x}: Table is not cluster aligned; L1 entry corrupted", times);
            // A table that a repair replaces is not repaired itself: its replacement is, in the next round.
            bool repairTable = active;
            if (active)
            {
                if (!inside && l2 >= _fileLength)
                {
                    EntryRepairs.Add(new(entryOffset, entry, Qcow2EntryFix.ClearL1, "names an L2 table past the end of the file"));
                    repairTable = false;
                }
                else if (aligned && _otherMetadata.Get(l2 >> _bits))
                {
                    EntryRepairs.Add(new(entryOffset, entry, Qcow2EntryFix.CopyTable, "names an L2 table inside other metadata"));
                    repairTable = false;
                }
            }
            if (_walked.TryGetValue((l2, active), out var seen))
            {
                seen.Extra += times;
                continue;
            }
            var table = await Qcow2Entries.ReadAsync(_file, l2, _cs / 8, ct).ConfigureAwait(false);
            var walk = new L2Walk { Extra = times - 1 };
            _walked[(l2, active)] = walk;
            _recording = walk;
            long corruptions = Result.Corruptions - _overflowCorruptions, allocated = Result.AllocatedClusters,
                fragmented = Result.FragmentedClusters, compressed = Result.CompressedClusters;
            WalkL2(table, l2, active, repairTable && aligned && _repairedTables.Add(l2));
            _recording = null;
            walk.Corruptions = Result.Corruptions - _overflowCorruptions - corruptions;
            walk.Allocated = Result.AllocatedClusters - allocated;
            walk.Fragmented = Result.FragmentedClusters - fragmented;
            walk.Compressed = Result.CompressedClusters - compressed;
        }
    }

    private void WalkL2(ulong[] table, long l2Offset, bool active, bool repair)
    {
        long nextContiguous = 0;
        for (int j = 0; j < table.Length; j++)
        {
            ulong entry = table[j];
            long entryOffset = l2Offset + 8L * j;
            bool compressed = (entry & Qcow2Entries.CompressedFlag) != 0;
            if (!compressed && (entry & Qcow2Entries.L2ReservedMask) != 0)
                Corruption($"ERROR found l2 entry with reserved bits set: {entry:x}");
            if (compressed)
            {
                var (host, length) = Qcow2Entries.CompressedExtent(entry, _bits);
                if ((entry & Qcow2Entries.CopiedFlag) != 0)
                    Corruption($"ERROR: coffset=0x{host:x}: copied flag must never be set for compressed clusters");
                if (Count(host, length)) _recording?.Ranges.Add((host, length));
                if (repair && (entry & Qcow2Entries.CopiedFlag) != 0)
                    EntryRepairs.Add(new(entryOffset, entry, Qcow2EntryFix.ClearCopied, "is compressed but marked as copied"));
                if (active)
                {
                    Result.AllocatedClusters++;
                    Result.CompressedClusters++;
                    Result.FragmentedClusters++; // compressed clusters share sectors: qemu-img counts each as fragmented
                }
                continue;
            }
            long offset = (long)(entry & Qcow2Entries.OffsetMask);
            if (offset == 0) continue; // unallocated or a plain zero cluster: nothing on the host
            bool zero = (entry & Qcow2Entries.ZeroFlag) != 0;
            bool aligned = offset % _cs == 0;
            if (!aligned)
            {
                Corruption(zero
                    ? $"ERROR offset={offset:x}: Preallocated cluster is not properly aligned; L2 offset={l2Offset:x}, idx={j}"
                    : $"ERROR offset={offset:x}: Data cluster is not properly aligned; L2 entry corrupted.");
            }
            if (active)
            {
                Result.AllocatedClusters++;
                if (nextContiguous != 0 && offset != nextContiguous) Result.FragmentedClusters++;
                nextContiguous = offset + _cs;
            }
            _overflowed = false;
            bool inside = Count(offset, _cs);
            if (inside) _recording?.Ranges.Add((offset, _cs));
            if (!repair) continue;
            string? why = !aligned ? "is not cluster aligned"
                : !inside ? "points past the end of the file"
                : _overflowed ? "shares its cluster more times than the refcount width counts"
                : _tables.Get(offset >> _bits) || _otherMetadata.Get(offset >> _bits) ? "points into metadata" : null;
            if (why != null)
                EntryRepairs.Add(new(entryOffset, entry, zero ? Qcow2EntryFix.PlainZero : Qcow2EntryFix.CopyData, why));
        }
    }

    /// <summary>The refcount table's entries: each must name an aligned block inside the image, referenced once.</summary>
    private void CheckRefcountBlocks()
    {
        for (long i = 0; i < _refcounts.TableLength; i++)
        {
            ulong raw = _refcounts.EntryAt(i);
            ulong offset = raw & RefTableOffsetMask;
            string? problem =
                (raw & Qcow2Entries.RefTableReservedMask) != 0 ? $"ERROR refcount table entry {i} has reserved bits set" :
                offset % (ulong)_cs != 0 ? $"ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted" :
                offset >> _bits >= (ulong)_nbClusters ? $"ERROR refcount block {i} is outside image" : null;
            if (problem != null)
            {
                Corruption(problem);
                RefcountCorruptions++;
                // qemu-img fails a -r leaks repair for every such entry but one outside the image (it only counts it).
                if (offset >> _bits >= (ulong)_nbClusters && offset % (ulong)_cs == 0 && (raw & Qcow2Entries.RefTableReservedMask) == 0)
                    BlockOutsideImage = true;
                else NeedsRebuild = true;
                continue;
            }
            if (offset == 0) continue;
            long cluster = (long)(offset >> _bits);
            Count((long)offset, _cs);
            if (References[cluster] != 1)
            {
                Corruption($"ERROR refcount block {i} refcount={References[cluster]}");
                RefcountCorruptions++;
                NeedsRebuild = true;
            }
        }
    }

    /// <summary>
    /// The refcount on disk of <paramref name="cluster"/>: 0 where no block covers it, null where the table entry
    /// cannot be followed (qemu-img counts a check error there).
    /// </summary>
    public async ValueTask<ulong?> RefcountAsync(long cluster, CancellationToken ct)
    {
        long index = _refcounts.BlockIndexOf(cluster);
        if (!_blockCache.TryGetValue(index, out var block))
        {
            if (!TryBlockOffset(index, out long offset)) return null;
            if (offset != 0)
            {
                var data = new byte[_cs];
                await _file.ReadAsync(offset, data, ct).ConfigureAwait(false); // past the end of the file reads as zeroes
                block = new Qcow2RefcountBlock(offset, data);
            }
            if (_blockCache.Count >= CachedBlocks) _blockCache.Clear();
            _blockCache[index] = block;
        }
        return block == null ? 0 : _refcounts.Get(block, cluster);
    }

    /// <summary>Where refcount block <paramref name="index"/> is (0 for none); false when its entry is unaligned or
    /// past the end of the file (qemu-img cannot read a refcount there).</summary>
    public bool TryBlockOffset(long index, out long offset)
    {
        ulong entry = index < _refcounts.TableLength ? _refcounts.EntryAt(index) & RefTableOffsetMask : 0;
        offset = entry >= (ulong)_fileLength ? 0 : (long)entry;
        return entry % (ulong)_cs == 0 && entry < (ulong)_fileLength;
    }

    /// <summary>Refcounts on disk against the references, cluster by cluster over the file (qemu-img's range).</summary>
    private async Task CompareAsync(CancellationToken ct)
    {
        long highest = 0;
        for (long c = 0; c < _nbClusters; c++)
        {
            if ((c & 0xffff) == 0) ct.ThrowIfCancellationRequested();
            ulong? onDisk = await RefcountAsync(c, ct).ConfigureAwait(false);
            if (onDisk == null)
            {
                Result.CheckErrors++;
                Message($"Can't get refcount for cluster {c}: Input/output error");
                continue;
            }
            ulong refcount = onDisk.Value, references = References[c];
            if (refcount > 0 || references > 0) highest = c;
            if (refcount == references) continue;
            if (refcount == 0) NeedsRebuild = true;
            Mismatches.Add(new(c, refcount, references));
            if (refcount < references)
            {
                Corruption($"ERROR cluster {c} refcount={refcount} reference={references}");
                RefcountCorruptions++;
            }
            else
            {
                Result.Leaks++;
                Message($"Leaked cluster {c} refcount={refcount} reference={references}");
            }
        }
        Result.ImageEndOffset = (highest + 1) * _cs;
    }

    /// <summary>The copied flag of every active L1 and L2 entry must say whether its cluster's refcount is exactly 1.</summary>
    private async Task CheckCopiedFlagsAsync(CancellationToken ct)
    {
        if (_header.L1Size == 0) return;
        long l1Offset = (long)_header.L1TableOffset;
        var l1 = await Qcow2Entries.ReadAsync(_file, l1Offset, (int)_header.L1Size, ct).ConfigureAwait(false);
        var checkedTables = new HashSet<long>();
        for (int i = 0; i < l1.Length; i++)
        {
            ulong entry = l1[i];
            long l2 = (long)(entry & Qcow2Entries.OffsetMask);
            if (l2 == 0) continue;
            ulong? refcount = await RefcountAsync(l2 >> _bits, ct).ConfigureAwait(false);
            if (refcount == null) continue;
            if ((refcount == 1) != ((entry & Qcow2Entries.CopiedFlag) != 0))
            {
                string what = $"OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={entry:x} refcount={refcount}";
                Corruption($"ERROR {what}");
                CopiedFixes.Add((l1Offset + 8L * i, entry, refcount == 1 ? entry | Qcow2Entries.CopiedFlag : entry & ~Qcow2Entries.CopiedFlag, what));
            }
            if (!checkedTables.Add(l2)) continue; // a table named twice is checked once (its entries are the same)
            var table = await Qcow2Entries.ReadAsync(_file, l2, _cs / 8, ct).ConfigureAwait(false);
            for (int j = 0; j < table.Length; j++)
            {
                ulong e = table[j];
                if ((e & Qcow2Entries.CompressedFlag) != 0) continue;
                long data = (long)(e & Qcow2Entries.OffsetMask);
                if (data == 0) continue;
                ulong? rc = await RefcountAsync(data >> _bits, ct).ConfigureAwait(false);
                if (rc == null) continue;
                if ((rc == 1) != ((e & Qcow2Entries.CopiedFlag) != 0))
                {
                    string what = $"OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}";
                    Corruption($"ERROR {what}");
                    CopiedFixes.Add((l2 + 8L * j, e, rc == 1 ? e | Qcow2Entries.CopiedFlag : e & ~Qcow2Entries.CopiedFlag, what));
                }
            }
        }
    }
}
