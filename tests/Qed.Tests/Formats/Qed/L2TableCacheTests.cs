using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class L2TableCacheTests
{
    private static long TableAt(int i) => EngineFixture.FirstFree + (long)i * EngineFixture.TableBytes;

    [Fact]
    public async Task ATableIsLoadedOnceHoweverManyRequestsWantIt()
    {
        var f = new EngineFixture(tables: 1, fill: (_, j) => j == 3 ? 1UL : 0);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int tableReads = 0;
        f.File.BeforeRead = async offset =>
        {
            if (offset == TableAt(0)) { Interlocked.Increment(ref tableReads); await release.Task; }
        };
        var waiting = Enumerable.Range(0, 16).Select(_ => f.Cache.GetAsync(0, CancellationToken.None).AsTask()).ToArray();
        await Task.Delay(50);
        Assert.All(waiting, t => Assert.False(t.IsCompleted));
        release.SetResult();
        var tables = await Task.WhenAll(waiting);
        Assert.Equal(1, tableReads);
        Assert.All(tables, t => Assert.Same(tables[0], t));
        Assert.Equal(EntryValidator.ZeroClusterEntry, tables[0]!.Entry(3));
        Assert.Same(tables[0], f.Cache.Peek(0));
    }

    [Fact]
    public async Task TheFastPathNeedsTheTableInMemoryOrNoTableAtAll()
    {
        var f = new EngineFixture(tables: 1, fill: (_, j) => j < 2 ? 1UL : 0);
        Assert.False(f.Cache.TryLookupCached(0, 4096, out _)); // L1 names a table not loaded yet
        Assert.True(f.Cache.TryLookupCached(4L << 20, 4096, out var absent)); // L1[1] is 0: certainly unallocated
        Assert.Equal(ExtentKind.Unallocated, absent.Kind);
        Assert.Equal(4096, absent.Length);

        var extent = await f.Cache.LookupAsync(0, 1L << 30, CancellationToken.None);
        Assert.Equal((ExtentKind.Zero, 8192L), (extent.Kind, extent.Length)); // two zero clusters, then unallocated
        int reads = f.File.Reads;
        Assert.True(f.Cache.TryLookupCached(8192, 1L << 30, out var rest));
        Assert.Equal((ExtentKind.Unallocated, (4L << 20) - 8192), (rest.Kind, rest.Length)); // never past its table
        Assert.Equal(reads, f.File.Reads);
    }

    [Fact]
    public async Task ALookupJoinsContiguousDataAndStopsAtAGap()
    {
        // Entries 0-2 map to three contiguous clusters, entry 3 elsewhere.
        var f = new EngineFixture(tables: 1, extraFileBytes: 8 * 4096,
            fill: (_, j) => j < 3 ? (ulong)(20480 + j * 4096) : j == 3 ? 45056UL : 0);
        var extent = await f.Cache.LookupAsync(100, 1L << 20, CancellationToken.None);
        Assert.Equal(ExtentKind.Data, extent.Kind);
        Assert.Equal(3 * 4096 - 100, extent.Length);
        Assert.Equal(20480 + 100, extent.FileOffset);
    }

    [Fact]
    public async Task LeastRecentlyUsedTablesGoWhenTheCacheIsOverBudget()
    {
        var f = new EngineFixture(tables: 6, cacheBudget: 4 * EngineFixture.TableBytes);
        for (int i = 0; i < 4; i++) await f.Cache.GetAsync(i, CancellationToken.None);
        Assert.True(f.Cache.TryLookupCached(0, 512, out _)); // table 0 used again: table 1 is now the oldest
        await f.Cache.GetAsync(4, CancellationToken.None);
        Assert.Equal(4, f.Cache.Count);
        Assert.Null(f.Cache.Peek(1));
        Assert.NotNull(f.Cache.Peek(0));
        await f.Cache.GetAsync(5, CancellationToken.None);
        Assert.Null(f.Cache.Peek(2));
        Assert.Equal(4, f.Cache.Count);
        // An evicted table loads again from disk on the next lookup.
        Assert.NotNull(await f.Cache.GetAsync(1, CancellationToken.None));
    }

    [Fact]
    public async Task DirtyPinnedUnlinkedQueuedAndBeingWrittenTablesAreNeverEvicted()
    {
        var f = new EngineFixture(tables: 9, cacheBudget: 0, extraFileBytes: 16 * 4096);
        var dirty = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        dirty.SetEntries(0, 1, 1, 0, markDirty: true);
        var pinned = (await f.Cache.GetAsync(1, CancellationToken.None))!;
        lock (f.MetaLock) f.Cache.PinLocked(pinned);
        var queued = (await f.Cache.GetAsync(2, CancellationToken.None))!;
        await f.WriteBack.CommitEntriesAsync(queued, 0, 1, 1, 0, eager: false); // dirty and in the write-back set
        var writing = (await f.Cache.GetAsync(3, CancellationToken.None))!;
        await writing.DiskLock.WaitAsync();
        var unlinked = new L2Table(10, (ulong)f.Allocator.Reserve(EngineFixture.TableBytes), new ulong[1024], linked: false);
        lock (f.MetaLock) f.Cache.AddNewLocked(unlinked);

        for (int i = 4; i < 9; i++) await f.Cache.GetAsync(i, CancellationToken.None); // each load evicts what it may
        Assert.Same(dirty, f.Cache.Peek(0));
        Assert.Same(pinned, f.Cache.Peek(1));
        Assert.Same(queued, f.Cache.Peek(2));
        Assert.Same(writing, f.Cache.Peek(3));
        Assert.Same(unlinked, f.Cache.Peek(10));
        Assert.NotNull(f.Cache.Peek(8)); // the table just loaded stays
        Assert.Null(f.Cache.Peek(4));    // clean ones went

        // Once clean, unpinned and written, they may go.
        writing.DiskLock.Release();
        lock (f.MetaLock) f.Cache.UnpinLocked(pinned);
        await f.WriteBack.WriteBackAsync();
        await f.Cache.GetAsync(4, CancellationToken.None);
        Assert.Null(f.Cache.Peek(1));
        Assert.Null(f.Cache.Peek(2));
        Assert.Null(f.Cache.Peek(3));
        Assert.Same(dirty, f.Cache.Peek(0)); // still dirty (never queued for write-back)
    }

    [Fact]
    public async Task AFailedLoadIsForgottenAndTriedAgain()
    {
        var f = new EngineFixture(tables: 1);
        bool fail = true;
        f.File.BeforeRead = offset => fail && offset == TableAt(0) ? throw new IOException("injected read failure") : Task.CompletedTask;
        await Assert.ThrowsAsync<IOException>(() => f.Cache.GetAsync(0, CancellationToken.None).AsTask());
        fail = false;
        Assert.NotNull(await f.Cache.GetAsync(0, CancellationToken.None));
    }

    [Fact]
    public async Task ATableOffsetThatCannotBeFollowedIsNotRead()
    {
        var l1 = new ulong[1024];
        l1[0] = 1 << 30; // far past the end of the file
        var f = new EngineFixture(l1Entries: l1);
        int reads = f.File.Reads;
        var e = await Assert.ThrowsAsync<ImageFormatException>(() => f.Cache.GetAsync(0, CancellationToken.None).AsTask());
        Assert.Equal("L1[0]", e.Field);
        Assert.Equal(reads, f.File.Reads);
        Assert.Same(e, f.Latch.Failure);
    }
}
