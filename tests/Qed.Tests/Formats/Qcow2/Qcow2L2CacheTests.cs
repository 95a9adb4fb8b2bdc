using Qed.Formats.Qcow2;
using Qed.Storage;
using Qed.Tests.Hostile;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>
/// The L2 cache: least recently used clean tables go first once over the budget; dirty and pinned tables never go;
/// a table read while another was evicted is not cached; and a whole qcow2 image read through stays within
/// <see cref="ImageOpenOptions.L2CacheBytes"/>.
/// </summary>
public sealed class Qcow2L2CacheTests
{
    private const int TableBytes = 512;

    private static Qcow2L2Table Table(int index) => new(index, 0x10000L * (index + 1), new ulong[TableBytes / 8]);

    /// <summary>A cache of <paramref name="budgetTables"/> tables' worth, holding tables 0..count-1 loaded in order.</summary>
    private static Qcow2L2Cache Loaded(int budgetTables, int count)
    {
        var cache = new Qcow2L2Cache(TableBytes, (long)budgetTables * TableBytes);
        for (int i = 0; i < count; i++) cache.AddLoaded(Table(i), cache.EvictionStamp);
        return cache;
    }

    [Fact]
    public void TheLeastRecentlyUsedCleanTableGoesFirst()
    {
        var cache = Loaded(budgetTables: 6, count: 6);
        Assert.NotNull(cache.TryGet(0)); // 0 is now the most recently used; 1 the least
        cache.AddLoaded(Table(6), cache.EvictionStamp);
        Assert.Null(cache.TryGet(1));
        Assert.NotNull(cache.TryGet(0));
        Assert.Equal(6 * TableBytes, cache.Bytes);
        Assert.Equal(6 * TableBytes, cache.HighWaterBytes);
    }

    [Fact]
    public void DirtyAndPinnedTablesAreNeverEvicted()
    {
        var cache = Loaded(budgetTables: 6, count: 6);
        var dirty = cache.MarkDirty(cache.TryGet(0)!);
        var pinned = cache.Pin(cache.TryGet(1)!);
        for (int i = 6; i < 40; i++) cache.AddLoaded(Table(i), cache.EvictionStamp);
        Assert.Same(dirty, cache.TryGet(0));
        Assert.Same(pinned, cache.TryGet(1));
        Assert.Equal(6 * TableBytes, cache.Bytes);

        // Clean again and unpinned, they become ordinary least-recently-used tables.
        cache.MarkClean([dirty]);
        cache.Unpin(pinned);
        for (int i = 40; i < 46; i++) cache.AddLoaded(Table(i), cache.EvictionStamp);
        Assert.Null(cache.TryGet(0));
        Assert.Null(cache.TryGet(1));
    }

    [Fact]
    public void DirtyTablesMayExceedTheBudgetUntilWrittenBack()
    {
        var cache = new Qcow2L2Cache(TableBytes, 4L * TableBytes);
        var made = Enumerable.Range(0, 10).Select(Table).ToList();
        foreach (var t in made) cache.AddNew(t);
        Assert.Equal(10 * TableBytes, cache.Bytes); // nothing could go
        cache.MarkClean(made);
        Assert.Equal(4 * TableBytes, cache.Bytes); // back within the budget once clean
    }

    [Fact]
    public void AtLeastAFewTablesStayWhateverTheBudget()
    {
        var cache = Loaded(budgetTables: 0, count: 10);
        Assert.Equal(Qcow2L2Cache.MinTables, cache.Count);
    }

    [Fact]
    public void ATableReadWhileAnotherWasEvictedIsNotCached()
    {
        var cache = Loaded(budgetTables: 4, count: 4);
        long stamp = cache.EvictionStamp;            // a reader starts loading table 10 from disk...
        cache.AddLoaded(Table(20), cache.EvictionStamp); // ...meanwhile a table is evicted (it may have been 10's newer copy)
        var stale = Table(10);
        Assert.Same(stale, cache.AddLoaded(stale, stamp)); // the reader still gets its copy, for its own lookup
        Assert.Null(cache.TryGet(10));                  // but it is not cached
        var fresh = Table(10);
        Assert.Same(fresh, cache.AddLoaded(fresh, cache.EvictionStamp));
        Assert.Same(fresh, cache.TryGet(10));
    }

    [Fact]
    public void ARacedLoadReturnsTheCachedTable()
    {
        var cache = Loaded(budgetTables: 8, count: 1);
        var first = cache.TryGet(0)!;
        Assert.Same(first, cache.AddLoaded(Table(0), cache.EvictionStamp));
        Assert.Same(first, cache.MarkDirty(Table(0))); // an evicted-and-reloaded copy: the cache's instance is updated
    }

    [Fact]
    public void MarkingAnEvictedTableDirtyCachesItAgain()
    {
        var cache = Loaded(budgetTables: 4, count: 4);
        var t0 = cache.TryGet(0)!;
        for (int i = 4; i < 8; i++) cache.AddLoaded(Table(i), cache.EvictionStamp);
        Assert.Null(cache.TryGet(0));
        Assert.Same(t0, cache.MarkDirty(t0));
        Assert.Same(t0, cache.TryGet(0));
        Assert.True(cache.IsDirty(t0));
    }

    [Fact]
    public void UnpinningAnUnpinnedTableThrows()
    {
        var cache = Loaded(budgetTables: 4, count: 1);
        Assert.Throws<InvalidOperationException>(() => cache.Unpin(cache.TryGet(0)!));
    }

    /// <summary>
    /// A 64 MiB image with 512-byte clusters has 2,048 L2 tables of 512 bytes (1 MiB); read whole with a 64 KiB
    /// budget, the cache never holds more than 64 KiB (it used to keep every table: at least 32 MiB or 64 tables).
    /// </summary>
    [Fact]
    public async Task ALargeImageReadWholeStaysWithinTheBudget()
    {
        const long size = 64L << 20, budget = 64 << 10;
        var s = new MemoryStorage("budget.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = size, ClusterSize = 512 });
        await using (var w = await Qcow2Image.OpenAsync(s))
        {
            var one = new byte[512];
            for (long at = 0; at < size; at += 32 << 10) // one cluster in every L2 table's range
            {
                one[0] = (byte)(at >> 15);
                await w.WriteAsync(at, one);
            }
        }
        await using var image = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true, L2CacheBytes = budget });
        var buffer = new byte[1 << 20];
        for (long at = 0; at < size; at += buffer.Length)
        {
            await image.ReadAsync(at, buffer);
            for (int i = 0; i < buffer.Length; i += 32 << 10) Assert.Equal((byte)((at + i) >> 15), buffer[i]);
        }
        var (now, highWater) = image.L2CacheBytes;
        Assert.True(highWater <= budget, $"the L2 cache held {highWater} bytes, over its budget of {budget}");
        Assert.True(now > 0 && now <= budget, $"the L2 cache holds {now} bytes");
    }

    [Fact]
    public async Task WritesStayWithinTheBudgetOnceWrittenBack()
    {
        const long size = 16L << 20, budget = 16 << 10;
        var s = new MemoryStorage("budget-w.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = size, ClusterSize = 512 });
        await using var image = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { L2CacheBytes = budget });
        for (long at = 0; at < size; at += 32 << 10) await image.WriteAsync(at, new byte[512]);
        await image.FlushAsync();
        var (now, highWater) = image.L2CacheBytes;
        // Dirty tables cannot go, so the write-back runs before they alone exceed the budget; a table or so over it
        // while one is made is allowed.
        Assert.True(highWater <= budget + 512, $"the L2 cache held {highWater} bytes, over its budget of {budget}");
        Assert.True(now <= budget, $"the L2 cache holds {now} bytes after a flush");
    }

    /// <summary>Storage that yields before every read and write, so concurrent requests interleave around table loads.</summary>
    private sealed class Yielding(IBlockStorage inner) : ForwardingStorage(inner)
    {
        public override async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
        {
            await Task.Yield();
            await base.ReadAsync(offset, buffer, ct);
        }
        public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            await Task.Yield();
            await base.WriteAsync(offset, data, ct);
        }
    }

    /// <summary>
    /// Eight writers and readers on a 256-table image whose cache keeps only the minimum of tables: tables are
    /// evicted, reloaded and raced all the time, and every mapping must survive (in the session and after reopening).
    /// </summary>
    [Fact]
    public async Task ConcurrentRequestsUnderATinyBudgetLoseNoMapping()
    {
        const int clusters = 16384; // 8 MiB of 512-byte clusters: 256 L2 tables
        var memory = new MemoryStorage("tiny-cache.qcow2");
        await Qcow2Image.CreateAsync(memory, new Qcow2CreateOptions { Size = clusters * 512L, ClusterSize = 512 });
        var expected = new byte[clusters]; // the fill byte of each cluster (0: never written)
        await using (var image = await Qcow2Image.OpenAsync(new Yielding(memory), new ImageOpenOptions { L2CacheBytes = 0 }))
        {
            await Task.WhenAll(Enumerable.Range(0, 8).Select(worker => Task.Run(async () =>
            {
                var rnd = new Random(worker);
                var buffer = new byte[512];
                for (int i = 0; i < 400; i++)
                {
                    int c = rnd.Next(clusters / 8) * 8 + worker; // each worker owns its clusters
                    byte fill = (byte)rnd.Next(1, 256);
                    await image.WriteAsync(c * 512L, SampleImages.Filled(512, fill));
                    expected[c] = fill;
                    int r = rnd.Next(clusters / 8) * 8 + worker;
                    await image.ReadAsync(r * 512L, buffer);
                    Assert.All(buffer, b => Assert.Equal(expected[r], b));
                    if (i % 100 == 99) await image.FlushAsync();
                }
            })));
            Assert.True(image.L2CacheBytes.Now <= 512L * Qcow2L2Cache.MinTables * 2, $"{image.L2CacheBytes.Now} bytes cached");
        }
        await using var reopened = await Qcow2Image.OpenAsync(memory, new ImageOpenOptions { ReadOnly = true });
        var all = new byte[clusters * 512];
        await reopened.ReadAsync(0, all);
        for (int c = 0; c < clusters; c++)
            if (all[c * 512] != expected[c] || all[c * 512 + 511] != expected[c])
                Assert.Fail($"cluster {c} reads 0x{all[c * 512]:x2}, not 0x{expected[c]:x2}");
    }
}
