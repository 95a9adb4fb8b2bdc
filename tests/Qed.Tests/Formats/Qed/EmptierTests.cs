using Qed.Check;
using Qed.Formats.Qed;
using Qed.Formats.Qed.Maintenance;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Tests.Formats.Qed;

public class EmptierTests
{
    // Two tables (at 12 KiB and 20 KiB) and four data clusters after them (28 KiB to 44 KiB).
    private const long Data0 = EngineFixture.FirstFree + 2 * EngineFixture.TableBytes;

    private static EngineFixture TwoTables() => new(tables: 2, extraFileBytes: 4 * EngineFixture.Cluster, fill: (i, j) => (i, j) switch
    {
        (0, 0) => (ulong)Data0,
        (0, 1) => (ulong)(Data0 + EngineFixture.Cluster),
        (1, 5) => (ulong)(Data0 + 2 * EngineFixture.Cluster),
        (1, 6) => EntryValidator.ZeroClusterEntry,
        _ => 0,
    });

    private static Emptier EmptierOf(EngineFixture f) =>
        new(f.File, f.Geometry, f.L1, f.Cache, f.Validator, f.Allocator, f.WriteBack, f.Latch, new RequestGate());

    [Fact]
    public async Task EveryL1EntryIsClearedAndSyncedBeforeTheFileIsCut()
    {
        var f = TwoTables();
        await f.Cache.GetAsync(0, CancellationToken.None); // one table in memory, one not
        var table = (await f.Cache.GetAsync(0, CancellationToken.None))!;
        // A dirty entry (the last data cluster): written back before anything else, so disk and memory agree first.
        await f.WriteBack.CommitEntriesAsync(table, 2, 1, (ulong)(Data0 + 3 * EngineFixture.Cluster), 0, eager: false);
        f.File.ClearLog();

        await EmptierOf(f).EmptyAsync(CancellationToken.None);

        var log = f.File.Log;
        int lastL1Write = Array.FindLastIndex(log, e => e.StartsWith("W ") && long.Parse(e.Split(' ')[1]) is >= EngineFixture.L1Offset and < EngineFixture.FirstFree);
        int cut = Array.IndexOf(log, $"L {EngineFixture.FirstFree}");
        Assert.True(lastL1Write >= 0 && cut > lastL1Write, string.Join(", ", log));
        Assert.Contains("F", log[(lastL1Write + 1)..cut]); // the cleared entries are durable before any cluster goes
        Assert.StartsWith($"W {EngineFixture.FirstFree} ", log[0]); // the dirty entry's sector of table 0 first
        Assert.Equal("F", log[^1]); // the cut is synced

        Assert.Equal(EngineFixture.FirstFree, f.Memory.Length);
        for (int i = 0; i < f.L1.Length; i++)
        {
            Assert.Equal(0UL, f.L1[i]);
            Assert.Equal(0UL, f.ReadU64(EngineFixture.L1Offset + 8L * i));
        }
        Assert.Null(f.Cache.Peek(0));
        Assert.True(f.Cache.TryLookupCached(0, 8L << 20, out var extent));
        Assert.Equal(ExtentKind.Unallocated, extent.Kind);
        Assert.False(f.Validator.IsTableCluster(f.Geometry.ClusterOf(EngineFixture.FirstFree)));
        Assert.Equal(EngineFixture.FirstFree, f.Allocator.FileEnd); // new clusters come from the cut
    }

    [Fact]
    public async Task AFailedL1WriteLatchesTheImageAndNothingIsCut()
    {
        var f = TwoTables();
        long length = f.Memory.Length;
        f.File.FailWrite = offset => offset == EngineFixture.L1Offset;
        await Assert.ThrowsAsync<IOException>(() => EmptierOf(f).EmptyAsync(CancellationToken.None));
        Assert.NotNull(f.Latch.Failure);
        Assert.Throws<ImageNeedsCheckException>(f.Latch.ThrowIfFailed);
        Assert.Equal(length, f.Memory.Length);
        Assert.DoesNotContain(f.File.Log, e => e.StartsWith("L "));
        Assert.Equal((ulong)EngineFixture.FirstFree, f.ReadU64(EngineFixture.L1Offset)); // the table is still linked on disk
    }

    [Fact]
    public async Task AnEmptiedImageReadsItsBackingFileChecksCleanAndAllocatesAfterTheL1Table()
    {
        const long Size = 8L << 20;
        var baseBytes = new byte[Size];
        new Random(5).NextBytes(baseBytes);
        var top = new MemoryStorage("top.qed");
        await QedImage.CreateAsync(top, new QedCreateOptions { Size = Size, ClusterSize = 4096, TableSize = 2, BackingFile = "base.raw", BackingFormat = ImageFormat.Raw });
        Task<DiskImage> OpenBase(string name, ImageFormat? format, CancellationToken ct) =>
            Task.FromResult<DiskImage>(new RawImage(new MemoryStorage(baseBytes, "base.raw", access: FileAccess.Read), readOnly: true));
        var model = (byte[])baseBytes.Clone();
        await using (var image = await QedImage.OpenAsync(top, null, OpenBase))
            await Operations.OperationFixtures.ScribbleAsync(image, model, 5, 30);
        Assert.True(top.Length > 3 * 4096 + 8192, "the image holds data");
        model.CopyTo(baseBytes, 0); // as a commit leaves the base

        await using (var image = await QedImage.OpenAsync(top, null, OpenBase))
        {
            await image.EmptyAsync(CancellationToken.None);
            Assert.Equal(3 * 4096, top.Length); // header and L1 only
            var content = new byte[Size];
            await image.ReadAsync(0, content);
            Assert.True(content.AsSpan().SequenceEqual(model), "the emptied image does not read its backing file");
            await image.WriteAsync(4096, new byte[4096]); // a new table and data cluster, right after the L1 table
        }
        Assert.Equal(3 * 4096 + 8192 + 4096, top.Length);
        var check = await QedChecker.CheckAsync(top, CheckRepair.None);
        Assert.True(check.Corruptions == 0 && check.Leaks == 0 && check.CheckErrors == 0, string.Join("; ", check.Messages));
    }
}
