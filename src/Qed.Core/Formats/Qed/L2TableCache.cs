using System.Diagnostics;
using Qed.Formats.Shared;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// The L2 tables in memory, and the lookups that turn a guest offset into a run of one kind (data at a file offset,
/// zero, or unallocated), validating every entry before it is followed.
/// </summary>
/// <remarks>
/// State owned here: <c>_tables</c> (loaded, loading and new tables by L1 index, as tasks, so a table is loaded once
/// however many requests want it), <c>_ready</c> (the same tables once loaded: the lock-free fast path of lookups),
/// and the <see cref="TableResidency"/> (shared with qcow2: byte budget, use order, pins) of the loaded and new
/// tables. All are guarded by the metadata lock the image hands in (an allocation's one lock section looks its table
/// up, pins it and reserves clusters together); <c>_ready</c> is also read without it, and a lookup records its use
/// with the residency's lock-free <see cref="TableResidency.Touch"/>. Invariants: a table in <c>_ready</c> is the one
/// in <c>_tables</c>, and resident; a table is evicted only when the cache is over budget, and only if it is clean,
/// linked, unpinned, not being written and not queued for write-back, since anything else holds state the disk does
/// not have yet; a failed load is forgotten so the next lookup tries again.
/// </remarks>
internal sealed class L2TableCache : ITableEvictor
{

    private readonly IBlockStorage _file;
    private readonly QedGeometry _g;
    private readonly L1Table _l1;
    private readonly EntryValidator _validator;
    private readonly MetadataWriteBack _writeBack;
    private readonly Lock _metaLock;
    private readonly Dictionary<int, Task<L2Table>> _tables = new(); // under _metaLock
    private readonly L2Table?[] _ready;
    private readonly TableResidency _residency; // under _metaLock, but Touch

    /// <summary>An empty cache over the tables <paramref name="l1"/> names; it keeps about <paramref name="budget"/> bytes of tables.</summary>
    public L2TableCache(IBlockStorage file, QedGeometry geometry, L1Table l1, EntryValidator validator,
        MetadataWriteBack writeBack, Lock metaLock, long budget)
    {
        _file = file;
        _g = geometry;
        _l1 = l1;
        _validator = validator;
        _writeBack = writeBack;
        _metaLock = metaLock;
        _ready = new L2Table?[l1.Length];
        _residency = new TableResidency(metaLock, this, geometry.TableBytes, budget);
    }

    /// <summary>Tables held now (loaded, loading or new).</summary>
    public int Count
    {
        get { lock (_metaLock) return _tables.Count; }
    }

    /// <summary>The table for an L1 index if it is in memory and loaded, else null; no lock, no I/O.</summary>
    public L2Table? Peek(int l1Index) => Volatile.Read(ref _ready[l1Index]);

    /// <summary>Returns the L2 table for an L1 index (loading and validating it), or null if none is allocated.</summary>
    public ValueTask<L2Table?> GetAsync(int l1Index, CancellationToken ct)
    {
        var ready = Volatile.Read(ref _ready[l1Index]);
        if (ready != null) return ValueTask.FromResult<L2Table?>(ready);
        Task<L2Table>? task;
        lock (_metaLock)
        {
            if (!_tables.TryGetValue(l1Index, out task))
            {
                ulong offset = _l1[l1Index];
                if (offset == 0) return ValueTask.FromResult<L2Table?>(null);
                task = LoadAsync(l1Index, offset);
                _tables[l1Index] = task;
            }
        }
        if (task.IsCompletedSuccessfully) return ValueTask.FromResult<L2Table?>(task.Result);
        return AwaitAsync(l1Index, task, ct);
    }

    private async ValueTask<L2Table?> AwaitAsync(int l1Index, Task<L2Table> task, CancellationToken ct)
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

    private async Task<L2Table> LoadAsync(int l1Index, ulong offset)
    {
        await Task.Yield(); // never run the read under the caller's lock
        _validator.CheckTable(l1Index, offset);
        var entries = await TableCodec.ReadAsync(_file, (long)offset, _g.TableBytes, CancellationToken.None).ConfigureAwait(false);
        var table = new L2Table(l1Index, offset, entries, linked: true);
        lock (_metaLock)
        {
            // Still wanted: a Drop while it was read (gate paused, loads awaited) leaves it to the one lookup.
            if (_tables.TryGetValue(l1Index, out var loading) && !loading.IsCompleted)
            {
                Volatile.Write(ref _ready[l1Index], table);
                _residency.AddLocked(table);
                _residency.EvictToBudgetLocked(table);
            }
        }
        return table;
    }

    /// <summary>
    /// Only clean, linked tables that no write-back is writing or will write may go (the residency checks pins).
    /// Caller holds the metadata lock.
    /// </summary>
    bool ITableEvictor.MayEvict(CachedTable table)
    {
        var t = (L2Table)table;
        return t.Linked && !t.IsDirty && t.DiskLock.CurrentCount != 0 && !_writeBack.IsQueuedLocked(t);
    }

    void ITableEvictor.Evicted(CachedTable table)
    {
        int l1Index = ((L2Table)table).L1Index;
        _tables.Remove(l1Index);
        Volatile.Write(ref _ready[l1Index], null);
    }

    /// <summary>
    /// For an allocation into L1 index <paramref name="l1Index"/>: the table if it is in memory; else null, with
    /// <paramref name="wait"/> set to its load if one runs (look again after it), or null when there is none (the
    /// L1 entry says whether a table exists on disk). Caller holds the metadata lock.
    /// </summary>
    public L2Table? FindLocked(int l1Index, out Task? wait)
    {
        Debug.Assert(_metaLock.IsHeldByCurrentThread);
        wait = null;
        if (!_tables.TryGetValue(l1Index, out var task)) return null;
        if (task.IsCompletedSuccessfully) return task.Result;
        wait = task;
        return null;
    }

    /// <summary>Adds a new, unlinked table (its clusters just reserved). Caller holds the metadata lock.</summary>
    public void AddNewLocked(L2Table table)
    {
        Debug.Assert(_metaLock.IsHeldByCurrentThread);
        if (_tables.TryGetValue(table.L1Index, out var replaced) && replaced.IsCompletedSuccessfully)
            _residency.RemoveLocked(replaced.Result);
        _tables[table.L1Index] = Task.FromResult(table);
        Volatile.Write(ref _ready[table.L1Index], table);
        _residency.AddLocked(table);
    }

    /// <summary>Pins a table for an allocation in flight: it is not evicted until unpinned. Caller holds the metadata lock.</summary>
    public void PinLocked(L2Table table)
    {
        _residency.PinLocked(table);
    }

    /// <summary>Ends a pin. Caller holds the metadata lock.</summary>
    public void UnpinLocked(L2Table table)
    {
        _residency.UnpinLocked(table);
    }

    /// <summary>Forgets the table of an L1 index whose entry was cleared (a shrink unlinking it, gate paused).</summary>
    public void Drop(int l1Index)
    {
        lock (_metaLock)
        {
            if (_tables.Remove(l1Index, out var dropped) && dropped.IsCompletedSuccessfully) _residency.RemoveLocked(dropped.Result);
            Volatile.Write(ref _ready[l1Index], null);
        }
    }

    /// <summary>
    /// Waits for table loads still running: a request cancelled while waiting for one has left the gate, but the load
    /// goes on and would install a copy read from disk while a paused maintenance step rewrites the table.
    /// </summary>
    public async Task AwaitLoadsAsync()
    {
        Task[] loads;
        lock (_metaLock) loads = _tables.Values.Where(t => !t.IsCompleted).ToArray();
        if (loads.Length == 0) return;
        try { await Task.WhenAll(loads).ConfigureAwait(false); }
        catch (Exception) { } // a failed load is the request's error; the next lookup loads again and reports it
    }

    /// <summary>
    /// Describes the run at <paramref name="offset"/> in this layer, at most <paramref name="length"/> bytes and never
    /// crossing an L2 table, validating each data entry it passes.
    /// </summary>
    public ValueTask<LayerExtent> LookupAsync(long offset, long length, CancellationToken ct) =>
        TryLookupCached(offset, length, out var extent) ? ValueTask.FromResult(extent) : LookupSlowAsync(offset, length, ct);

    private async ValueTask<LayerExtent> LookupSlowAsync(long offset, long length, CancellationToken ct)
    {
        var table = await GetAsync(_g.L1IndexOf(offset), ct).ConfigureAwait(false);
        return Scan(table, offset, length);
    }

    /// <summary>The lookup without I/O or locks, when the table is in memory (or certainly absent).</summary>
    public bool TryLookupCached(long offset, long length, out LayerExtent extent)
    {
        int l1Index = _g.L1IndexOf(offset);
        var table = Volatile.Read(ref _ready[l1Index]);
        if (table is null && _l1[l1Index] != 0)
        {
            extent = default;
            return false;
        }
        if (table != null) TableResidency.Touch(table);
        extent = Scan(table, offset, length);
        return true;
    }

    private LayerExtent Scan(L2Table? table, long offset, long length)
    {
        long tableSpan = _g.TableSpan;
        long max = Math.Min(length, tableSpan - (offset & (tableSpan - 1)));
        if (table is null) return new LayerExtent(offset, max, ExtentKind.Unallocated, -1);

        int index = _g.L2IndexOf(offset);
        ulong entry = table.Entry(index);
        var kind = _validator.Classify(table, index, entry);
        long inCluster = _g.InCluster(offset);
        long run = _g.ClusterSize - inCluster;
        ulong expected = entry + (ulong)_g.ClusterSize;
        int entries = _g.EntriesPerTable;
        for (int i = index + 1; run < max && i < entries; i++)
        {
            ulong next = table.Entry(i);
            if (kind == ExtentKind.Data)
            {
                if (next != expected) break;
                _validator.Classify(table, i, next);
                expected += (ulong)_g.ClusterSize;
            }
            else if (_validator.Classify(table, i, next) != kind)
            {
                break;
            }
            run += _g.ClusterSize;
        }
        return new LayerExtent(offset, Math.Min(run, max), kind, kind == ExtentKind.Data ? (long)entry + inCluster : -1);
    }

    /// <summary>
    /// Describes an L1 entry or an in-memory L2 entry that points into [offset, offset+length), or null (the stress
    /// test's check that nothing still points at a range being punched or cut; tables not cached are not looked at).
    /// </summary>
    public string? FindReference(long offset, long length)
    {
        ulong low = (ulong)offset, high = (ulong)(offset + length);
        for (int i = 0; i < _l1.Length; i++)
        {
            ulong t = _l1[i];
            if (t != 0 && t < high && t + (ulong)_g.TableBytes > low) return $"L1[{i}] = 0x{t:x}";
            var table = Volatile.Read(ref _ready[i]);
            if (table is null) continue;
            for (int j = 0; j < table.Count; j++)
            {
                ulong e = table.Entry(j);
                if (e > EntryValidator.ZeroClusterEntry && e < high && e + (ulong)_g.ClusterSize > low) return $"L2[{i}][{j}] = 0x{e:x}";
            }
        }
        return null;
    }
}
