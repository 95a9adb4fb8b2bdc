using System.Buffers.Binary;
using System.Collections.Concurrent;
using Qed.Format;

namespace Qed;

// Tables: the L1 table, the L2 cache, and lookups that validate every entry before it is followed.
public sealed partial class QedImage
{
    /// <summary>
    /// An L2 table in memory: the authority for reads. Entries and the dirty range change under <c>lock (table)</c>;
    /// <see cref="DiskLock"/> orders this table's disk writes so an older copy never lands after a newer one.
    /// </summary>
    private sealed class L2Table(int l1Index, ulong fileOffset, ulong[] entries, bool linked)
    {
        public readonly int L1Index = l1Index;
        public ulong FileOffset = fileOffset; // changes only while the gate is paused (defragment moves tables)
        public readonly ulong[] Entries = entries;
        /// <summary>True once the table is on disk and the L1 entry pointing at it is written.</summary>
        public bool Linked = linked;
        /// <summary>Entries [DirtyLow, DirtyHigh] changed in memory and not yet written; DirtyHigh &lt; 0 when clean.</summary>
        public int DirtyLow = int.MaxValue, DirtyHigh = -1;
        public readonly SemaphoreSlim DiskLock = new(1, 1);
        /// <summary>Allocations in flight into this table; a pinned table is never evicted. Under _metaLock.</summary>
        public int Pins;
        /// <summary>The cache epoch of the last lookup, for least-recently-used eviction.</summary>
        public long LastUse;
    }

    /// <summary>The L2 cache's budget in bytes; at least a few tables are always kept.</summary>
    private readonly long _cacheBudget;
    private long _cacheEpoch; // advances at every table load, so LastUse writes are rare on hot tables

    private readonly ulong[] _l1;

    // Guarded by _metaLock: the table cache, clusters being allocated, the allocation cursor and the dirty state.
    private readonly Lock _metaLock = new();
    private readonly Dictionary<int, Task<L2Table>> _tables = new(); // loaded, loading and new tables
    private readonly L2Table?[] _ready;   // loaded and new tables by L1 index: the lock-free fast path of lookups
    private long _fileEnd;           // next free cluster-aligned file offset; only grows
    private long _staleEnd; // the file's length at open (or a later synced truncation): below it bytes may be stale
    private long _extendedTo;        // the file length this session has set: never below any reserved cluster
    private long _growAheadTo;       // 0, or the length Reserve asked an allocation to grow the file to; -1 while it does
    private readonly Lock _growLock = new(); // one file growth at a time, so growing never races another grow
    private const long GrowStep = 4L << 20;

    /// <summary>Set when a corrupt entry or a failed metadata write was met: writes are refused until a check.</summary>
    private volatile Exception? _failure;

    private const ulong ZeroClusterEntry = 1;

    // Every cluster of every L2 table (cluster index -> L1 index), so a data entry pointing into a table is refused
    // before anything writes through it; and the tables that overlap an earlier one (or L1), which are never followed.
    private readonly ConcurrentDictionary<long, int> _tableClusters = new();
    private readonly HashSet<int> _overlappingTables = new();

    /// <summary>
    /// Indexes the L2 tables named by L1 at open. A table overlapping the L1 table or a table of a lower L1 index is
    /// recorded as overlapping, as the check counts it: the first claim keeps the clusters.
    /// </summary>
    private void IndexTables()
    {
        long fileClusters = _fileEnd / _clusterSize;
        for (int i = 0; i < _l1.Length; i++)
        {
            ulong offset = _l1[i];
            if (offset == 0 || !_header.IsValidTableOffset(offset, fileClusters)) continue;
            long first = (long)(offset >> _clusterBits);
            bool overlaps = OverlapsL1(offset, _tableBytes);
            for (long c = first; c < first + _header.TableSize && !overlaps; c++) overlaps = _tableClusters.ContainsKey(c);
            if (overlaps) { _overlappingTables.Add(i); continue; }
            for (long c = first; c < first + _header.TableSize; c++) _tableClusters[c] = i;
        }
    }

    /// <summary>Records a new table's clusters. Caller holds _metaLock.</summary>
    private void IndexNewTable(int l1Index, long offset)
    {
        for (long c = offset >> _clusterBits; c < (offset + _tableBytes) >> _clusterBits; c++) _tableClusters[c] = l1Index;
    }

    private int L1IndexOf(long offset) => (int)(offset >> (_clusterBits + _entryBits));
    private int L2IndexOf(long offset) => (int)((offset >> _clusterBits) & (_entriesPerTable - 1));

    /// <summary>Returns the L2 table for an L1 index (loading and validating it), or null if none is allocated.</summary>
    private ValueTask<L2Table?> GetTableAsync(int l1Index, CancellationToken ct)
    {
        var ready = Volatile.Read(ref _ready[l1Index]);
        if (ready != null) return ValueTask.FromResult<L2Table?>(ready);
        Task<L2Table>? task;
        lock (_metaLock)
        {
            if (!_tables.TryGetValue(l1Index, out task))
            {
                ulong offset = Volatile.Read(ref _l1[l1Index]);
                if (offset == 0) return ValueTask.FromResult<L2Table?>(null);
                task = LoadTableAsync(l1Index, offset);
                _tables[l1Index] = task;
            }
        }
        if (task.IsCompletedSuccessfully) return ValueTask.FromResult<L2Table?>(task.Result);
        return AwaitTableAsync(l1Index, task, ct);
    }

    private async ValueTask<L2Table?> AwaitTableAsync(int l1Index, Task<L2Table> task, CancellationToken ct)
    {
        try
        {
            var table = await task.WaitAsync(ct).ConfigureAwait(false);
            // Many requests may wait for one table load. Resumed inline, they would run one after another on the
            // thread that finished the load, and a caller whose next requests complete without waiting (page-cache
            // hits) would keep that thread and leave the other cores idle (seen: a 16-deep benchmark on one core).
            // Each goes on as its own work item instead.
            await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
            return table;
        }
        catch (Exception) when (task.IsFaulted)
        {
            lock (_metaLock)
                if (_tables.TryGetValue(l1Index, out var current) && current == task) _tables.Remove(l1Index);
            throw;
        }
    }

    private async Task<L2Table> LoadTableAsync(int l1Index, ulong offset)
    {
        await Task.Yield(); // never run the read under the caller's lock
        if (!_header.IsValidTableOffset(offset, Volatile.Read(ref _fileEnd) / _clusterSize) || OverlapsL1(offset, _tableBytes))
            throw Corrupt($"QED L1 entry {l1Index} (file offset 0x{L1EntryFileOffset(l1Index):x}) is an invalid table offset 0x{offset:x}",
                $"L1[{l1Index}]", L1EntryFileOffset(l1Index));
        if (_overlappingTables.Contains(l1Index))
            throw Corrupt($"QED L1 entry {l1Index} (file offset 0x{L1EntryFileOffset(l1Index):x}) names the table 0x{offset:x}, which overlaps another L2 table",
                $"L1[{l1Index}]", L1EntryFileOffset(l1Index));
        var entries = await ReadTableAsync(_file, (long)offset, _tableBytes, CancellationToken.None).ConfigureAwait(false);
        var table = new L2Table(l1Index, offset, entries, linked: true) { LastUse = Interlocked.Increment(ref _cacheEpoch) };
        Volatile.Write(ref _ready[l1Index], table);
        lock (_metaLock) EvictLocked(table);
        return table;
    }

    /// <summary>
    /// Drops least-recently-used tables while the cache is over budget. Only clean, linked tables that no allocation
    /// has pinned and no write-back is writing may go: anything else holds state the disk does not have yet.
    /// </summary>
    private void EvictLocked(L2Table keep)
    {
        const int MinTables = 4;
        while ((long)_tables.Count * _tableBytes > _cacheBudget && _tables.Count > MinTables)
        {
            L2Table? victim = null;
            foreach (var task in _tables.Values)
            {
                if (!task.IsCompletedSuccessfully) continue;
                var t = task.Result;
                if (t == keep || t.Pins > 0 || !t.Linked || t.DirtyHigh >= 0 || t.DiskLock.CurrentCount == 0 || _dirtyTables.Contains(t)) continue;
                if (victim is null || t.LastUse < victim.LastUse) victim = t;
            }
            if (victim is null) return;
            _tables.Remove(victim.L1Index);
            Volatile.Write(ref _ready[victim.L1Index], null);
        }
    }

    private long L1EntryFileOffset(int l1Index) => (long)_header.L1TableOffset + 8L * l1Index;

    private bool OverlapsL1(ulong offset, long length) =>
        offset < _header.L1TableOffset + (ulong)_tableBytes && offset + (ulong)length > _header.L1TableOffset;

    /// <summary>Records a corruption met at run time: the request fails and the image refuses writes until checked.</summary>
    private ImageFormatException Corrupt(string message, string field, long fileOffset)
    {
        var error = new ImageFormatException($"{message}; the image '{Name}' needs 'qed check -r all'", field, fileOffset);
        _failure ??= error;
        return error;
    }

    private void ThrowIfFailed()
    {
        var failure = _failure;
        if (failure != null)
            throw new ImageNeedsCheckException($"Writes to '{Name}' are refused until it is checked: {failure.Message}", failure);
    }

    /// <summary>
    /// Describes the run at <paramref name="offset"/> in this layer, at most <paramref name="length"/> bytes and never
    /// crossing an L2 table, validating each data entry it passes.
    /// </summary>
    private ValueTask<LayerExtent> LookupAsync(long offset, long length, CancellationToken ct) =>
        TryLookupCached(offset, length, out var extent) ? ValueTask.FromResult(extent) : LookupSlowAsync(offset, length, ct);

    private async ValueTask<LayerExtent> LookupSlowAsync(long offset, long length, CancellationToken ct)
    {
        var table = await GetTableAsync(L1IndexOf(offset), ct).ConfigureAwait(false);
        return Scan(table, offset, length);
    }

    /// <summary>The lookup without I/O or locks, when the table is in memory (or certainly absent).</summary>
    private bool TryLookupCached(long offset, long length, out LayerExtent extent)
    {
        int l1Index = L1IndexOf(offset);
        var table = Volatile.Read(ref _ready[l1Index]);
        if (table is null && Volatile.Read(ref _l1[l1Index]) != 0)
        {
            extent = default;
            return false;
        }
        if (table != null)
        {
            long epoch = Volatile.Read(ref _cacheEpoch);
            if (table.LastUse != epoch) table.LastUse = epoch;
        }
        extent = Scan(table, offset, length);
        return true;
    }

    private LayerExtent Scan(L2Table? table, long offset, long length)
    {
        long tableSpan = 1L << (_clusterBits + _entryBits);
        long max = Math.Min(length, tableSpan - (offset & (tableSpan - 1)));
        if (table is null) return new LayerExtent(offset, max, ExtentKind.Unallocated, -1);

        int index = L2IndexOf(offset);
        ulong entry = Volatile.Read(ref table.Entries[index]);
        var kind = Classify(table, index, entry);
        long inCluster = offset & (_clusterSize - 1);
        long run = _clusterSize - inCluster;
        ulong expected = entry + (ulong)_clusterSize;
        for (int i = index + 1; run < max && i < _entriesPerTable; i++)
        {
            ulong next = Volatile.Read(ref table.Entries[i]);
            if (kind == ExtentKind.Data)
            {
                if (next != expected) break;
                Classify(table, i, next);
                expected += (ulong)_clusterSize;
            }
            else if (Classify(table, i, next) != kind)
            {
                break;
            }
            run += _clusterSize;
        }
        return new LayerExtent(offset, Math.Min(run, max), kind, kind == ExtentKind.Data ? (long)entry + inCluster : -1);
    }

    /// <summary>Says what an L2 entry means, throwing if it is a data offset that cannot be followed safely.</summary>
    private ExtentKind Classify(L2Table table, int index, ulong entry)
    {
        if (entry == 0) return ExtentKind.Unallocated;
        if (entry == ZeroClusterEntry) return ExtentKind.Zero;
        string? problem =
            entry % (ulong)_clusterSize != 0 ? "not cluster aligned" :
            entry < (ulong)_headerBytes ? "inside the header" :
            entry >= (ulong)Volatile.Read(ref _fileEnd) ? "past the end of the file" : // aligned, so the whole cluster fits below: no overflowing sum
            OverlapsL1(entry, _clusterSize) ? "inside the L1 table" :
            _tableClusters.ContainsKey((long)(entry >> _clusterBits)) ? "inside an L2 table" :
            null;
        if (problem == null) return ExtentKind.Data;
        long at = (long)table.FileOffset + 8L * index;
        throw Corrupt($"QED L2 table {table.L1Index} entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, {problem}",
            $"L2[{table.L1Index}][{index}]", at);
    }
}
