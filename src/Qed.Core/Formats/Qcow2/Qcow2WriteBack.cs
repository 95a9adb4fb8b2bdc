using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>
/// Metadata write-back for a writable qcow2 image: which L2 tables and L1 entries changed in memory, and the flush that
/// writes them, the refcounts and the frees in dependency order with a sync between steps, so that whatever prefix of
/// it survives a crash is consistent (clusters may leak, never alias):
/// <list type="number">
/// <item>refcount blocks (and, by the same sync, all guest data written so far);</item>
/// <item>the refcount table, then (if it moved) the header fields pointing at it;</item>
/// <item>L2 tables (a new table is durable before the L1 entry that links it; new data before the entry that maps it);</item>
/// <item>L1 sectors holding changed entries;</item>
/// <item>frees: refcounts of clusters whose last reference was removed in steps 3-4.</item>
/// </list>
/// </summary>
/// <remarks>
/// Invariants: a dirty table stays dirty (and cached: the cache never evicts it) until step 3 has synced it; every
/// table the write-back writes is overlap-checked before the first write; the write-back is not cancellable (half a
/// write-back is worse than none). Not thread-safe: runs and is fed under the image's allocation lock (the caller's);
/// only <see cref="DirtyL2Bytes"/> is read without it.
/// </remarks>
internal sealed class Qcow2WriteBack
{
    private readonly IBlockStorage _file;
    private readonly Qcow2Refcounts _refcounts;
    private readonly Qcow2ClusterAllocator _allocator;
    private readonly Qcow2OverlapGuard _guard;
    private readonly Qcow2L2Cache _cache;
    private readonly ulong[] _l1;
    private readonly long _l1Offset;
    private readonly int _clusterSize;
    private readonly HashSet<Qcow2L2Table> _dirtyL2 = new();
    private int _dirtyL2Count;
    private readonly SortedSet<int> _dirtyL1 = new();

    /// <summary>Write-back of the tables of one image.</summary>
    public Qcow2WriteBack(IBlockStorage file, Qcow2Refcounts refcounts, Qcow2ClusterAllocator allocator, Qcow2OverlapGuard guard,
        Qcow2L2Cache cache, ulong[] l1, long l1Offset, int clusterSize)
    {
        _file = file;
        _refcounts = refcounts;
        _allocator = allocator;
        _guard = guard;
        _cache = cache;
        _l1 = l1;
        _l1Offset = l1Offset;
        _clusterSize = clusterSize;
    }

    /// <summary>Bytes of dirty L2 tables; lock-free, for deciding when to write back.</summary>
    public long DirtyL2Bytes => (long)Volatile.Read(ref _dirtyL2Count) * _clusterSize;

    /// <summary>Records that <paramref name="table"/> (already marked dirty in the cache) must be written back.</summary>
    public void AddDirty(Qcow2L2Table table)
    {
        _dirtyL2.Add(table);
        Volatile.Write(ref _dirtyL2Count, _dirtyL2.Count);
    }

    /// <summary>Records that L1 entry <paramref name="index"/> changed.</summary>
    public void AddDirtyL1(int index) => _dirtyL1.Add(index);

    /// <summary>Runs the write-back (see the type's summary).</summary>
    public async Task RunAsync()
    {
        var ct = CancellationToken.None;
        await CheckAsync().ConfigureAwait(false);
        bool metadata = _dirtyL2.Count > 0 || _dirtyL1.Count > 0 || _refcounts.TableDirty || _allocator.HasPendingFrees;

        // 1. Refcount blocks (data rides on the same sync).
        metadata |= await _refcounts.WriteDirtyBlocksAsync(ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        if (!metadata) return;

        // 2. Refcount table, then the header that points at a moved one.
        if (_refcounts.TableDirty) await _refcounts.WriteTableAsync(ct).ConfigureAwait(false);

        // 3. L2 tables.
        if (_dirtyL2.Count > 0)
        {
            foreach (var table in _dirtyL2)
                await _file.WriteAsync(table.FileOffset, Qcow2Entries.Encode(table.Entries, 0, table.Entries.Length), ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
            _cache.MarkClean(_dirtyL2);
            _dirtyL2.Clear();
            Volatile.Write(ref _dirtyL2Count, 0);
        }

        // 4. L1 sectors holding changed entries.
        if (_dirtyL1.Count > 0)
        {
            const int perSector = 512 / 8;
            int lastStart = -1;
            foreach (int index in _dirtyL1)
            {
                int start = index / perSector * perSector;
                if (start == lastStart) continue;
                lastStart = start;
                int count = Math.Min(perSector, _l1.Length - start);
                await _file.WriteAsync(_l1Offset + 8L * start, Qcow2Entries.Encode(_l1, start, count), ct).ConfigureAwait(false);
            }
            await _file.FlushAsync(ct).ConfigureAwait(false);
            _dirtyL1.Clear();
        }

        // 5. Frees, now that no durable mapping points at the space.
        if (_allocator.HasPendingFrees)
        {
            await _allocator.ApplyPendingFreesAsync(ct).ConfigureAwait(false);
            await _refcounts.WriteDirtyBlocksAsync(ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Checks every table the write-back is about to write, before it writes any.</summary>
    private async ValueTask CheckAsync()
    {
        foreach (var (index, block) in _refcounts.LoadedBlocks)
            if (block.Dirty) await _guard.CheckRefBlockAsync(index, block.FileOffset).ConfigureAwait(false);
        if (_refcounts.TableDirty) await _guard.CheckRefTableAsync().ConfigureAwait(false);
        foreach (var table in _dirtyL2) await _guard.CheckL2ForUpdateAsync(table).ConfigureAwait(false);
        if (_dirtyL1.Count > 0) await _guard.CheckL1Async().ConfigureAwait(false);
        // The blocks the frees of the last step will change are loaded, and so checked, now: a bad one (or a bad
        // refcount table entry) then fails the write-back before it has written anything.
        await _allocator.LoadBlocksForPendingFreesAsync().ConfigureAwait(false);
    }
}
