using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Qed.Formats.Shared;

/// <summary>
/// Which L2 tables a cache keeps within its byte budget, and which goes first: the format-neutral part of QED's and
/// qcow2's L2 caches (each keeps its own map of tables and its own lookup path, and says through an
/// <see cref="ITableEvictor"/> what may not go).
/// </summary>
/// <remarks>
/// Invariants, all under the lock the cache hands in (except <see cref="Touch"/>):
/// <list type="bullet">
/// <item>The use order holds exactly the resident tables, least recently used at the old end. A use is recorded
/// either at once (<see cref="UsedLocked"/>, from a caller holding the lock) or lock-free (<see cref="Touch"/>, one
/// flag written only when not already set): a touched table found at the old end moves to the newest end instead of
/// going, so a lookup hit costs no lock and, on a hot table, almost never a write.</item>
/// <item>Beyond the budget, tables go from the old end until the cache fits, but at least <see cref="MinTables"/>
/// stay. A pinned table, the one being kept (just loaded or just used), and any the evictor refuses (dirty, being
/// written, not yet linked) never go, and keep their place: such tables may take the cache over its budget.</item>
/// <item>Eviction walks the order once per call; nothing here allocates after the tables themselves.</item>
/// </list>
/// </remarks>
internal sealed class TableResidency
{
    /// <summary>Tables always kept, whatever the budget, so a lookup never evicts the table it is about to use.</summary>
    public const int MinTables = 4;

    private readonly Lock _guard;
    private readonly ITableEvictor _evictor;
    private readonly int _tableBytes;
    private readonly long _budget;
    private CachedTable? _newest, _oldest;
    private int _count;
    private long _evictions;
    private long _highWater;

    /// <summary>
    /// Residency for tables of <paramref name="tableBytes"/> bytes within <paramref name="budgetBytes"/>, guarded by
    /// <paramref name="guard"/>; <paramref name="evictor"/> says what may go and forgets what went.
    /// </summary>
    public TableResidency(Lock guard, ITableEvictor evictor, int tableBytes, long budgetBytes)
    {
        _guard = guard;
        _evictor = evictor;
        _tableBytes = tableBytes;
        _budget = Math.Max(0, budgetBytes);
    }

    /// <summary>The budget in bytes.</summary>
    public long Budget => _budget;

    /// <summary>Resident tables. Caller holds the lock.</summary>
    public int CountLocked { get { Debug.Assert(_guard.IsHeldByCurrentThread); return _count; } }

    /// <summary>Bytes of resident tables. Caller holds the lock.</summary>
    public long BytesLocked { get { Debug.Assert(_guard.IsHeldByCurrentThread); return (long)_count * _tableBytes; } }

    /// <summary>The most bytes of tables resident at the end of an eviction pass (a table added and evicted in one
    /// step does not count). Caller holds the lock.</summary>
    public long HighWaterBytesLocked { get { Debug.Assert(_guard.IsHeldByCurrentThread); return _highWater; } }

    /// <summary>Tables evicted so far: a cache compares two readings to learn whether any went in between. Caller holds the lock.</summary>
    public long EvictionsLocked { get { Debug.Assert(_guard.IsHeldByCurrentThread); return _evictions; } }

    /// <summary>Records a lookup of <paramref name="table"/> without the lock: it will not go before tables used less recently.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Touch(CachedTable table)
    {
        if (!table.Touched) table.Touched = true;
    }

    /// <summary>Makes <paramref name="table"/> resident (if it is not), as the most recently used. Caller holds the lock.</summary>
    public void AddLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        if (table.Resident) { UsedLocked(table); return; }
        table.Resident = true;
        table.Touched = false;
        LinkNewest(table);
        _count++;
    }

    /// <summary>Forgets <paramref name="table"/> (the format dropped it itself); nothing if it is not resident. Caller holds the lock.</summary>
    public void RemoveLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        if (!table.Resident) return;
        Unlink(table);
        table.Resident = false;
        _count--;
    }

    /// <summary>Records a use of a resident <paramref name="table"/> now: it becomes the most recently used. Caller holds the lock.</summary>
    public void UsedLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        table.Touched = false;
        if (!table.Resident || table == _newest) return;
        Unlink(table);
        LinkNewest(table);
    }

    /// <summary>Pins <paramref name="table"/>: never evicted until as many unpins. Caller holds the lock.</summary>
    public void PinLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        table.Pins++;
    }

    /// <summary>Whether <paramref name="table"/> is pinned. Caller holds the lock.</summary>
    public bool IsPinnedLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        return table.Pins > 0;
    }

    /// <summary>Ends one pin of <paramref name="table"/>; it keeps its place in the use order. Caller holds the lock.</summary>
    /// <exception cref="InvalidOperationException">The table is not pinned.</exception>
    public void UnpinLocked(CachedTable table)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        if (table.Pins <= 0) throw new InvalidOperationException("an L2 table that is not pinned was unpinned");
        table.Pins--;
    }

    /// <summary>
    /// Evicts from the old end until the resident tables fit the budget (or only <see cref="MinTables"/> remain),
    /// never <paramref name="keep"/>, a pinned table or one the evictor refuses. Caller holds the lock.
    /// </summary>
    public void EvictToBudgetLocked(CachedTable? keep)
    {
        Debug.Assert(_guard.IsHeldByCurrentThread);
        // Each table is looked at most twice: a touched one moves to the newest end (its flag cleared) and may be met
        // again at the end of the walk.
        var candidate = _oldest;
        var stopAfter = _newest;
        bool passedEnd = false;
        while (candidate != null && (long)_count * _tableBytes > _budget && _count > MinTables)
        {
            var next = candidate.Newer;
            if (candidate == stopAfter) passedEnd = true;
            if (candidate.Touched && !passedEnd)
            {
                candidate.Touched = false;
                Unlink(candidate);
                LinkNewest(candidate);
            }
            else if (candidate != keep && candidate.Pins == 0 && _evictor.MayEvict(candidate))
            {
                RemoveLocked(candidate);
                _evictions++;
                _evictor.Evicted(candidate);
            }
            candidate = next;
        }
        long bytes = (long)_count * _tableBytes;
        if (bytes > _highWater) _highWater = bytes;
    }

    private void LinkNewest(CachedTable table)
    {
        table.Older = _newest;
        table.Newer = null;
        if (_newest != null) _newest.Newer = table;
        _newest = table;
        _oldest ??= table;
    }

    private void Unlink(CachedTable table)
    {
        if (table.Newer != null) table.Newer.Older = table.Older;
        else _newest = table.Older;
        if (table.Older != null) table.Older.Newer = table.Newer;
        else _oldest = table.Newer;
        table.Newer = table.Older = null;
    }
}
