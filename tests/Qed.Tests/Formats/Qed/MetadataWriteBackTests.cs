using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class MetadataWriteBackTests
{
    private static readonly long Table0 = EngineFixture.FirstFree;

    [Fact]
    public async Task DeferredEntriesAreSeenAtOnceAndReachTheDiskAtWriteBackInTheirSector()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 4 * 4096);
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        f.File.ClearLog();
        long before = f.WriteBack.MappingVersion;
        await f.WriteBack.CommitEntriesAsync(table, 100, 2, 20480, 4096, eager: false);
        Assert.Equal([20480UL, 24576UL], new[] { table.Entry(100), table.Entry(101) });
        Assert.True(f.WriteBack.MappingVersion > before);
        Assert.Empty(f.File.Log);
        Assert.Equal(0UL, f.ReadU64(Table0 + 8 * 100));

        await f.WriteBack.WriteBackAsync();
        Assert.Equal([$"W {Table0 + 64 * 8} 512"], f.File.Log); // entries 64-127: one sector, no sync (no backing file)
        Assert.Equal(24576UL, f.ReadU64(Table0 + 8 * 101));
        Assert.False(table.IsDirty);
        f.File.ClearLog();
        await f.WriteBack.WriteBackAsync(); // nothing dirty: nothing written
        Assert.Empty(f.File.Log);
    }

    [Fact]
    public async Task WithABackingFileDataIsSyncedBeforeTheEntriesAreWritten()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 4 * 4096, dataBeforeEntries: true);
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        await f.WriteBack.CommitEntriesAsync(table, 0, 1, 20480, 0, eager: false);
        f.File.ClearLog();
        await f.WriteBack.WriteBackAsync();
        Assert.Equal(["F", $"W {Table0} 512"], f.File.Log);
    }

    [Fact]
    public async Task TheSkipDataFlushFaultDropsThatSync()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 4 * 4096, dataBeforeEntries: true, skipDataFlush: true);
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        await f.WriteBack.CommitEntriesAsync(table, 0, 1, 20480, 0, eager: false);
        f.File.ClearLog();
        await f.WriteBack.WriteBackAsync();
        Assert.Equal([$"W {Table0} 512"], f.File.Log);
    }

    [Fact]
    public async Task ANewTableIsWrittenWholeAndSyncedBeforeTheL1EntryLinksIt()
    {
        var f = new EngineFixture();
        long at = f.Allocator.Reserve(EngineFixture.TableBytes);
        var table = new L2Table(3, (ulong)at, new ulong[1024], linked: false);
        lock (f.MetaLock) f.Cache.AddNewLocked(table);
        await f.WriteBack.CommitEntriesAsync(table, 5, 1, EntryValidator.ZeroClusterEntry, 0, eager: false);
        f.File.ClearLog();
        await f.WriteBack.WriteBackAsync();
        Assert.Equal([$"W {at} {EngineFixture.TableBytes}", "F", $"W {EngineFixture.L1Offset} 512"], f.File.Log);
        Assert.True(table.Linked);
        Assert.Equal((ulong)at, f.L1[3]);
        Assert.Equal((ulong)at, f.ReadU64(EngineFixture.L1Offset + 8 * 3));
        Assert.Equal(1UL, f.ReadU64(at + 8 * 5));
    }

    [Fact]
    public async Task EagerCommitsAreOnDiskWhenTheyReturnAndShareTheirSyncs()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 64 * 4096, writeThrough: true);
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        f.File.FlushDelay = TimeSpan.FromMilliseconds(30);
        await Task.WhenAll(Enumerable.Range(0, 32).Select(i => Task.Run(() =>
            f.WriteBack.CommitEntriesAsync(table, i, 1, (ulong)(20480 + 4096 * i), 0, eager: false).AsTask())));
        for (int i = 0; i < 32; i++) Assert.Equal((ulong)(20480 + 4096 * i), f.ReadU64(Table0 + 8 * i));
        Assert.InRange(f.File.Flushes, 1, 8); // group commit: far fewer syncs than commits
        Assert.False(table.IsDirty);
    }

    [Fact]
    public async Task TooManyDirtyTablesStartAWriteBack()
    {
        int tables = MetadataWriteBack.MaxDirtyTables + 1;
        var f = new EngineFixture(tables: tables, extraFileBytes: 4096);
        long data = EngineFixture.FirstFree + (long)tables * EngineFixture.TableBytes;
        for (int i = 0; i < tables; i++)
        {
            var table = (await f.Cache.GetAsync(i, CancellationToken.None))!;
            await f.WriteBack.CommitEntriesAsync(table, 0, 1, (ulong)data, 0, eager: false);
        }
        for (int i = 0; i < tables; i++) Assert.Equal((ulong)data, f.ReadU64(EngineFixture.FirstFree + (long)i * EngineFixture.TableBytes));
    }

    [Fact]
    public async Task AFailedMetadataWriteStopsWritesUntilACheck()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 4 * 4096);
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        await f.WriteBack.CommitEntriesAsync(table, 0, 1, 20480, 0, eager: false);
        f.File.FailWrite = offset => offset == Table0;
        var e = await Assert.ThrowsAsync<IOException>(f.WriteBack.WriteBackAsync);
        Assert.Same(e, f.Latch.Failure);
        Assert.Same(e, Assert.Throws<ImageNeedsCheckException>(f.Latch.ThrowIfFailed).InnerException);
        // The table's disk lock was released: a later write-back does not hang.
        f.File.FailWrite = null;
        await f.WriteBack.CommitEntriesAsync(table, 1, 1, 24576, 0, eager: false);
        await f.WriteBack.WriteBackAsync().WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task L1WritesChangeTheMappingVersionAndWriteOneSector()
    {
        var f = new EngineFixture();
        long before = f.WriteBack.MappingVersion;
        f.File.ClearLog();
        await f.WriteBack.WriteL1EntryAsync(70, 0);
        Assert.True(f.WriteBack.MappingVersion > before);
        Assert.Equal([$"W {EngineFixture.L1Offset + 64 * 8} 512"], f.File.Log);
    }
}
