using Qed.Formats.Shared;

namespace Qed.Tests.Formats.Shared;

/// <summary>
/// The residency both L2 caches share: least recently used first out once over the budget; lock-free touches count
/// as uses; pinned, kept and refused tables never go and keep their place; at least a few tables stay.
/// </summary>
public sealed class TableResidencyTests
{
    private const int TableBytes = 512;

    private sealed class Table(int id) : CachedTable
    {
        public int Id { get; } = id;
        public bool Refused;
    }

    /// <summary>An evictor that refuses what is marked refused and records what went, in order.</summary>
    private sealed class Evictor : ITableEvictor
    {
        public readonly List<int> Evicted = [];
        public bool MayEvict(CachedTable table) => !((Table)table).Refused;
        void ITableEvictor.Evicted(CachedTable table) => Evicted.Add(((Table)table).Id);
    }

    private readonly Lock _lock = new();
    private readonly Evictor _evictor = new();

    private TableResidency Residency(int budgetTables) => new(_lock, _evictor, TableBytes, (long)budgetTables * TableBytes);

    /// <summary>Adds tables <paramref name="from"/>..<paramref name="to"/> in order, evicting after each as a load does.</summary>
    private static Table[] Load(TableResidency r, int from, int to)
    {
        var tables = Enumerable.Range(from, to - from + 1).Select(i => new Table(i)).ToArray();
        foreach (var t in tables)
        {
            r.AddLocked(t);
            r.EvictToBudgetLocked(t);
        }
        return tables;
    }

    [Fact]
    public void TheLeastRecentlyUsedGoFirstWhetherUsedUnderTheLockOrTouched()
    {
        var r = Residency(budgetTables: 5);
        lock (_lock)
        {
            var t = Load(r, 0, 4);
            r.UsedLocked(t[0]);          // used under the lock: now the newest
            TableResidency.Touch(t[1]);  // touched lock-free: moves up when met at the old end
            Load(r, 5, 7);
            Assert.Equal([2, 3, 4], _evictor.Evicted);
            Assert.Equal(5, r.CountLocked);
            Assert.Equal(5L * TableBytes, r.BytesLocked);
            Assert.Equal(3, r.EvictionsLocked);
            // A touch is a use recorded when the table's turn comes: 1 now ranks after 5, loaded before that turn.
            Load(r, 8, 9);
            Assert.Equal([2, 3, 4, 0, 5], _evictor.Evicted);
        }
    }

    [Fact]
    public void PinnedKeptAndRefusedTablesNeverGoAndKeepTheirPlace()
    {
        var r = Residency(budgetTables: 0);
        lock (_lock)
        {
            var t = Load(r, 0, 3);
            r.PinLocked(t[0]);
            t[1].Refused = true;
            Load(r, 4, 9); // each load leaves the minimum, and never the table just loaded
            Assert.Equal([2, 3, 4, 5, 6, 7], _evictor.Evicted);
            Assert.True(t[0].Resident && t[1].Resident);
            Assert.Equal(TableResidency.MinTables, r.CountLocked); // 0, 1, 8 and 9

            // Unpinned and accepted again, they are still the oldest: the next pass takes them first.
            r.UnpinLocked(t[0]);
            t[1].Refused = false;
            _evictor.Evicted.Clear();
            Load(r, 10, 12);
            Assert.Equal([0, 1, 8], _evictor.Evicted);
        }
    }

    [Fact]
    public void TablesOverTheBudgetStayUntilTheyMayGo()
    {
        var r = Residency(budgetTables: 4);
        lock (_lock)
        {
            var t = Enumerable.Range(0, 10).Select(i => new Table(i) { Refused = true }).ToArray();
            foreach (var table in t) { r.AddLocked(table); r.EvictToBudgetLocked(table); }
            Assert.Equal(10L * TableBytes, r.BytesLocked); // nothing could go
            Assert.Equal(10L * TableBytes, r.HighWaterBytesLocked);
            foreach (var table in t) table.Refused = false;
            r.EvictToBudgetLocked(null);
            Assert.Equal(4L * TableBytes, r.BytesLocked);
            Assert.Equal([0, 1, 2, 3, 4, 5], _evictor.Evicted);
        }
    }

    [Fact]
    public void ARemovedTableIsForgottenWithoutAnEviction()
    {
        var r = Residency(budgetTables: 8);
        lock (_lock)
        {
            var t = Load(r, 0, 2);
            r.RemoveLocked(t[1]);
            r.RemoveLocked(t[1]); // not resident: nothing
            Assert.False(t[1].Resident);
            Assert.Equal(2, r.CountLocked);
            Assert.Equal(0, r.EvictionsLocked);
            Assert.Empty(_evictor.Evicted);
            r.AddLocked(t[1]);
            r.AddLocked(t[1]); // already resident: only a use
            Assert.Equal(3, r.CountLocked);
        }
    }

    [Fact]
    public void UnpinningAnUnpinnedTableThrows()
    {
        var r = Residency(budgetTables: 4);
        lock (_lock)
        {
            var t = Load(r, 0, 0);
            r.PinLocked(t[0]);
            Assert.True(r.IsPinnedLocked(t[0]));
            r.UnpinLocked(t[0]);
            Assert.False(r.IsPinnedLocked(t[0]));
            Assert.Throws<InvalidOperationException>(() => r.UnpinLocked(t[0]));
        }
    }
}
