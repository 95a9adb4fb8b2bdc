namespace Qed.Formats.Qcow2;

/// <summary>
/// An L2 table in memory: the authority for lookups while it is cached. <see cref="Entries"/> change only under the
/// image's allocation lock and are read with volatile reads; the other state belongs to <see cref="Qcow2L2Cache"/>
/// and changes only under its lock.
/// </summary>
internal sealed class Qcow2L2Table(int l1Index, long fileOffset, ulong[] entries)
{
    public int L1Index { get; } = l1Index;
    public long FileOffset { get; } = fileOffset;
    public ulong[] Entries { get; } = entries;

    // Cache state (under the cache's lock).
    internal bool Dirty;
    internal int Pins;
    internal bool Cached;
    /// <summary>Neighbours in the cache's eviction list, which holds exactly the cached, clean, unpinned tables.</summary>
    internal Qcow2L2Table? Newer, Older;
    internal bool Evictable;
}

/// <summary>
/// The qcow2 L2 table cache with a byte budget (<see cref="ImageOpenOptions.L2CacheBytes"/>): tables by L1 index,
/// least recently used evicted first.
/// </summary>
/// <remarks>
/// Invariants, all under one private lock held only for in-memory bookkeeping (never across I/O):
/// <list type="bullet">
/// <item>A dirty table (changed in memory, not yet written back) or a pinned one (an allocation in flight into it) is
/// never evicted: the disk does not hold what it holds. Such tables may take the cache over its budget until written
/// back or unpinned.</item>
/// <item>The eviction list holds exactly the cached tables that are clean and unpinned, most recently used first, so
/// a lookup hit and an eviction are O(1) and allocate nothing.</item>
/// <item>Beyond the budget, clean unpinned tables go until the cache fits, but at least <see cref="MinTables"/> stay.</item>
/// <item>A table loaded from disk is cached only if no table was evicted while it was being read: otherwise the copy
/// may predate a change that was made, written back and evicted meanwhile, and caching it would resurrect old entries
/// (it is still returned, for the one lookup that read it, which raced the change).</item>
/// </list>
/// The shape (try-get, add-loaded, mark-dirty, pin, mark-clean) is format-neutral; only the table type is qcow2's.
/// </remarks>
internal sealed class Qcow2L2Cache
{
    /// <summary>Tables always kept, whatever the budget, so a lookup never evicts the table it is about to use.</summary>
    public const int MinTables = 4;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, Qcow2L2Table> _tables = new();
    private readonly long _budget;
    private readonly int _tableBytes;
    private Qcow2L2Table? _newest, _oldest;
    private long _evictions;
    private long _highWater;

    /// <summary>A cache for tables of <paramref name="tableBytes"/> bytes within <paramref name="budgetBytes"/>.</summary>
    public Qcow2L2Cache(int tableBytes, long budgetBytes)
    {
        _tableBytes = tableBytes;
        _budget = Math.Max(0, budgetBytes);
    }

    /// <summary>Bytes of tables cached now.</summary>
    public long Bytes { get { lock (_lock) return (long)_tables.Count * _tableBytes; } }

    /// <summary>The most bytes of tables ever cached at once.</summary>
    public long HighWaterBytes { get { lock (_lock) return _highWater; } }

    /// <summary>How many tables are cached.</summary>
    public int Count { get { lock (_lock) return _tables.Count; } }

    /// <summary>The budget in bytes.</summary>
    public long Budget => _budget;

    /// <summary>An eviction counter to read before loading a table from disk and hand to <see cref="AddLoaded"/>.</summary>
    public long EvictionStamp { get { lock (_lock) return _evictions; } }

    /// <summary>The cached table for <paramref name="l1Index"/>, marked most recently used; null on a miss.</summary>
    public Qcow2L2Table? TryGet(int l1Index)
    {
        lock (_lock)
        {
            if (!_tables.TryGetValue(l1Index, out var table)) return null;
            if (table.Evictable && table != _newest)
            {
                Unlink(table);
                LinkNewest(table);
            }
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
            if (stamp != _evictions) return table;
            Insert(table);
            EvictToBudget(table);
            UpdateHighWater();
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
            if (_tables.TryGetValue(table.L1Index, out var current)) table = current;
            else Insert(table);
            table.Dirty = true;
            if (table.Evictable) Unlink(table);
            EvictToBudget(table);
            UpdateHighWater();
            return table;
        }
    }

    /// <summary>Caches a table made in memory (no disk copy yet): dirty from the start. Caller holds the allocation lock.</summary>
    public void AddNew(Qcow2L2Table table)
    {
        lock (_lock)
        {
            table.Dirty = true;
            _tables[table.L1Index] = table;
            table.Cached = true;
            EvictToBudget(table);
            UpdateHighWater();
        }
    }

    /// <summary>Pins the cached instance for <paramref name="table"/>'s index (caching this one if none) and returns it: never evicted until unpinned.</summary>
    public Qcow2L2Table Pin(Qcow2L2Table table)
    {
        lock (_lock)
        {
            if (_tables.TryGetValue(table.L1Index, out var current)) table = current;
            else Insert(table);
            table.Pins++;
            if (table.Evictable) Unlink(table);
            EvictToBudget(table);
            UpdateHighWater();
            return table;
        }
    }

    /// <summary>Releases one pin; with <paramref name="dirty"/>, marks the table dirty in the same step.</summary>
    public void Unpin(Qcow2L2Table table, bool dirty = false)
    {
        lock (_lock)
        {
            if (table.Pins <= 0) throw new InvalidOperationException($"L2 table {table.L1Index} is not pinned");
            table.Pins--;
            if (dirty) table.Dirty = true;
            MakeEvictableIfIdle(table);
            EvictToBudget(null);
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
                MakeEvictableIfIdle(table);
            }
            EvictToBudget(null);
        }
    }

    /// <summary>Whether <paramref name="table"/> is dirty (for tests and assertions).</summary>
    public bool IsDirty(Qcow2L2Table table) { lock (_lock) return table.Dirty; }

    private void Insert(Qcow2L2Table table)
    {
        _tables[table.L1Index] = table;
        table.Cached = true;
        MakeEvictableIfIdle(table);
    }

    private void MakeEvictableIfIdle(Qcow2L2Table table)
    {
        if (table.Cached && !table.Dirty && table.Pins == 0 && !table.Evictable) LinkNewest(table);
    }

    private void EvictToBudget(Qcow2L2Table? keep)
    {
        while ((long)_tables.Count * _tableBytes > _budget && _tables.Count > MinTables)
        {
            var victim = _oldest;
            if (victim == keep) victim = victim?.Newer;
            if (victim is null) return;
            Unlink(victim);
            _tables.Remove(victim.L1Index);
            victim.Cached = false;
            _evictions++;
        }
    }

    private void UpdateHighWater()
    {
        long bytes = (long)_tables.Count * _tableBytes;
        if (bytes > _highWater) _highWater = bytes;
    }

    private void LinkNewest(Qcow2L2Table table)
    {
        table.Older = _newest;
        table.Newer = null;
        if (_newest != null) _newest.Newer = table;
        _newest = table;
        _oldest ??= table;
        table.Evictable = true;
    }

    private void Unlink(Qcow2L2Table table)
    {
        if (table.Newer != null) table.Newer.Older = table.Older;
        else _newest = table.Older;
        if (table.Older != null) table.Older.Newer = table.Newer;
        else _oldest = table.Newer;
        table.Newer = table.Older = null;
        table.Evictable = false;
    }
}
