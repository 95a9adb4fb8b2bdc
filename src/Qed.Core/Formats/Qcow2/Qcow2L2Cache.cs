using Qed.Formats.Shared;

namespace Qed.Formats.Qcow2;

/// <summary>
/// An L2 table in memory: the authority for lookups while it is cached. <see cref="Entries"/> change only under the
/// image's allocation lock and are read with volatile reads; the other state belongs to <see cref="Qcow2L2Cache"/>
/// and changes only under its lock.
/// </summary>
internal sealed class Qcow2L2Table(int l1Index, long fileOffset, ulong[] entries) : CachedTable
{
    public int L1Index { get; } = l1Index;
    public long FileOffset { get; } = fileOffset;
    public ulong[] Entries { get; } = entries;

    /// <summary>Changed in memory and not yet written back (under the cache's lock).</summary>
    internal bool Dirty;
}

/// <summary>
/// The qcow2 L2 table cache with a byte budget (<see cref="ImageOpenOptions.L2CacheBytes"/>): tables by L1 index,
/// least recently used evicted first. Which tables stay is <see cref="TableResidency"/>'s (shared with QED); the map
/// of tables, dirtiness and the load race are qcow2's.
/// </summary>
/// <remarks>
/// Invariants, all under one private lock held only for in-memory bookkeeping (never across I/O):
/// <list type="bullet">
/// <item>A dirty table (changed in memory, not yet written back) or a pinned one (an allocation in flight into it) is
/// never evicted: the disk does not hold what it holds. Such tables may take the cache over its budget until written
/// back or unpinned, and then count as just used.</item>
/// <item>Every use (a hit, a load, a change) is recorded at once, so the order is exact least-recent-use.</item>
/// <item>Beyond the budget, clean unpinned tables go until the cache fits, but at least <see cref="MinTables"/> stay.</item>
/// <item>A table loaded from disk is cached only if no table was evicted while it was being read: otherwise the copy
/// may predate a change that was made, written back and evicted meanwhile, and caching it would resurrect old entries
/// (it is still returned, for the one lookup that read it, which raced the change).</item>
/// </list>
/// </remarks>
internal sealed class Qcow2L2Cache : ITableEvictor
{
    /// <summary>Tables always kept, whatever the budget, so a lookup never evicts the table it is about to use.</summary>
    public const int MinTables = TableResidency.MinTables;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, Qcow2L2Table> _tables = new();
    private readonly TableResidency _residency;

    /// <summary>A cache for tables of <paramref name="tableBytes"/> bytes within <paramref name="budgetBytes"/>.</summary>
    public Qcow2L2Cache(int tableBytes, long budgetBytes)
    {
        _residency = new TableResidency(_lock, this, tableBytes, budgetBytes);
    }

    /// <summary>Bytes of tables cached now.</summary>
    public long Bytes { get { lock (_lock) return _residency.BytesLocked; } }

    /// <summary>The most bytes of tables ever cached at once.</summary>
    public long HighWaterBytes { get { lock (_lock) return _residency.HighWaterBytesLocked; } }

    /// <summary>How many tables are cached.</summary>
    public int Count { get { lock (_lock) return _tables.Count; } }

    /// <summary>The budget in bytes.</summary>
    public long Budget => _residency.Budget;

    /// <summary>An eviction counter to read before loading a table from disk and hand to <see cref="AddLoaded"/>.</summary>
    public long EvictionStamp { get { lock (_lock) return _residency.EvictionsLocked; } }

    /// <summary>The cached table for <paramref name="l1Index"/>, marked most recently used; null on a miss.</summary>
    public Qcow2L2Table? TryGet(int l1Index)
    {
        lock (_lock)
        {
            if (!_tables.TryGetValue(l1Index, out var table)) return null;
            _residency.UsedLocked(table);
            return table;
        }
    }

    /// <summary>
    /// Caches a clean table just read from disk, unless one for its index is cached already (returned instead) or
    /// a table was evicted since <paramref name="stamp"/> (the copy is returned uncached). Evicts to fit the budget.
    /// </summary>
    public Qcow2L2Table AddLoaded(Qcow2L2Table table, long stamp)
    {
        lock (_lock)
        {
            if (_tables.TryGetValue(table.L1Index, out var raced)) return raced;
            if (stamp != _residency.EvictionsLocked) return table;
            Insert(table);
            _residency.EvictToBudgetLocked(table);
            return table;
        }
    }

    /// <summary>
    /// Marks <paramref name="table"/> dirty and returns the instance the cache holds for its index: that one if the
    /// cache holds another (a clean table evicted and reloaded: identical, as only the allocation lock's holder changes
    /// entries), else this one, cached again if it had been evicted. Caller holds the allocation lock.
    /// </summary>
    public Qcow2L2Table MarkDirty(Qcow2L2Table table)
    {
        lock (_lock)
        {
            table = CachedInstance(table);
            table.Dirty = true;
            _residency.EvictToBudgetLocked(table);
            return table;
        }
    }

    /// <summary>Caches a table made in memory (no disk copy yet): dirty from the start. Caller holds the allocation lock.</summary>
    public void AddNew(Qcow2L2Table table)
    {
        lock (_lock)
        {
            table.Dirty = true;
            Insert(table);
            _residency.EvictToBudgetLocked(table);
        }
    }

    /// <summary>Pins the cached instance for <paramref name="table"/>'s index (caching this one if none) and returns it: never evicted until unpinned.</summary>
    public Qcow2L2Table Pin(Qcow2L2Table table)
    {
        lock (_lock)
        {
            table = CachedInstance(table);
            _residency.PinLocked(table);
            _residency.EvictToBudgetLocked(table);
            return table;
        }
    }

    /// <summary>Releases one pin; with <paramref name="dirty"/>, marks the table dirty in the same step.</summary>
    public void Unpin(Qcow2L2Table table, bool dirty = false)
    {
        lock (_lock)
        {
            if (!_residency.IsPinnedLocked(table)) throw new InvalidOperationException($"L2 table {table.L1Index} is not pinned");
            _residency.UnpinLocked(table);
            if (dirty) table.Dirty = true;
            _residency.UsedLocked(table);
            _residency.EvictToBudgetLocked(null);
        }
    }

    /// <summary>Marks tables clean once their contents are durable, and evicts down to the budget.</summary>
    public void MarkClean(IEnumerable<Qcow2L2Table> written)
    {
        lock (_lock)
        {
            foreach (var table in written)
            {
                table.Dirty = false;
                _residency.UsedLocked(table);
            }
            _residency.EvictToBudgetLocked(null);
        }
    }

    /// <summary>Whether <paramref name="table"/> is dirty (for tests and assertions).</summary>
    public bool IsDirty(Qcow2L2Table table) { lock (_lock) return table.Dirty; }

    bool ITableEvictor.MayEvict(CachedTable table) => !((Qcow2L2Table)table).Dirty;

    void ITableEvictor.Evicted(CachedTable table) => _tables.Remove(((Qcow2L2Table)table).L1Index);

    /// <summary>The instance cached for <paramref name="table"/>'s index, caching this one if none, marked just used.</summary>
    private Qcow2L2Table CachedInstance(Qcow2L2Table table)
    {
        if (_tables.TryGetValue(table.L1Index, out var current)) table = current;
        else Insert(table);
        _residency.UsedLocked(table);
        return table;
    }

    private void Insert(Qcow2L2Table table)
    {
        _tables[table.L1Index] = table;
        _residency.AddLocked(table);
    }
}
