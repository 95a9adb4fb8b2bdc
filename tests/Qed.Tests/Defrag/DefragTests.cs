using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Defrag;

/// <summary>
/// Defragmenting images whose clusters were written in random order (with zero clusters, discarded and so leaked
/// clusters, with and without a backing file, in memory and on disk) keeps every byte and leaves the minimal,
/// guest-ordered layout.
/// </summary>
public sealed class DefragTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("qed-defrag-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData(false, false, 4096u, 1)]
    [InlineData(false, true, 4096u, 2)]
    [InlineData(false, false, 65536u, 3)]
    [InlineData(false, true, 65536u, 4)]
    [InlineData(true, false, 4096u, 5)]
    [InlineData(true, true, 65536u, 6)]
    public async Task DefragKeepsEveryByteAndLeavesTheMinimalGuestOrderedLayout(bool onDisk, bool withBacking, uint clusterSize, int seed)
    {
        long size = clusterSize == 4096 ? 4L << 20 : 24L << 20;
        var model = new byte[size];
        MemoryStorage? backing = null;
        if (withBacking)
        {
            var content = new byte[size - 3 * clusterSize]; // shorter than the image: zeroes past its end
            new Random(seed + 100).NextBytes(content);
            content.CopyTo(model, 0);
            backing = new MemoryStorage(content, "base.raw", access: FileAccess.Read);
        }
        IBlockStorage storage = onDisk ? FileStorage.Create(Path.Combine(_dir.FullName, "d.qed")) : new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions
        {
            Size = size, ClusterSize = (int)clusterSize, TableSize = 2,
            BackingFile = withBacking ? "base.raw" : null, BackingFormat = withBacking ? ImageFormat.Raw : null,
        });
        Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? openBacking =
            backing is null ? null : (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true));
        await using var image = await QedImage.OpenAsync(storage, null, openBacking);
        await DefragLayout.ScatterAsync(image, model, seed);
        await image.FlushAsync();
        long before = storage.Length;
        await DefragLayout.AssertCleanAsync(storage, leaksAllowed: true);

        var reports = new List<(long Done, long Total)>();
        await image.DefragmentAsync(new SyncProgress(reports.Add));

        Assert.NotEmpty(reports);
        Assert.Equal(reports[^1].Total, reports[^1].Done);
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(image));
        long dataClusters = await DefragLayout.AssertDefragmentedAsync(image, storage);
        Assert.True(dataClusters > 0);
        Assert.True(storage.Length < before, $"file {before} -> {storage.Length}");
        await DefragLayout.AssertCleanAsync(storage);

        // The image stays fully usable: new writes allocate after the compacted end, and a second pass has nothing to do.
        var more = new byte[clusterSize];
        new Random(seed).NextBytes(more);
        await image.WriteAsync(0, more);
        more.CopyTo(model, 0);
        await image.DefragmentAsync();
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(image));
        await DefragLayout.AssertDefragmentedAsync(image, storage);
        await image.DisposeAsync();
        await using var reopened = await QedImage.OpenAsync(onDisk ? FileStorage.Open(Path.Combine(_dir.FullName, "d.qed"), writable: false) : storage,
            new ImageOpenOptions { ReadOnly = true }, openBacking);
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(reopened));
    }

    [Fact]
    public async Task AnEmptyImageAndOneOfLeaksOnlyShrinkToHeaderAndL1()
    {
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 8L << 20, ClusterSize = 4096, TableSize = 2 });
        await storage.WriteAsync(3 * 4096, new byte[3 * 4096].Select(_ => (byte)0xee).ToArray()); // three leaked clusters
        await using (var image = await QedImage.OpenAsync(storage))
        {
            await image.DefragmentAsync();
            Assert.Equal(3 * 4096, storage.Length);
        }
        await using (var image = await QedImage.OpenAsync(storage))
        {
            await image.WriteAsync(1 << 20, Enumerable.Repeat((byte)0x5a, 3 * 4096).ToArray());
            await image.DiscardAsync(1 << 20, 3 * 4096); // punched in place: the clusters stay mapped and read as zeroes
            await image.DefragmentAsync();
            Assert.Equal(8 * 4096, storage.Length); // header, L1 and L2 tables, three data clusters: nothing leaked
            var back = new byte[3 * 4096];
            await image.ReadAsync(1 << 20, back);
            Assert.All(back, b => Assert.Equal(0, b));
        }
        await DefragLayout.AssertCleanAsync(storage);
    }

    /// <summary>A discarded cluster is a punched hole that stays mapped; a defrag that moves it keeps it a hole.</summary>
    [Fact]
    public async Task ADiscardedClusterStaysAHoleWhenDefragMovesIt()
    {
        const int cs = 65536; // MemoryStorage tracks holes in 64 KiB pages
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 8L << 20, ClusterSize = cs, TableSize = 2 });
        await using (var image = await QedImage.OpenAsync(storage))
        {
            await image.WriteAsync(3 * cs, Enumerable.Repeat((byte)0x33, cs).ToArray()); // file order: guest 3, 2, 1
            await image.WriteAsync(2 * cs, Enumerable.Repeat((byte)0x22, cs).ToArray());
            await image.WriteAsync(1 * cs, Enumerable.Repeat((byte)0x11, cs).ToArray());
            await image.DiscardAsync(3 * cs, cs);
            await image.DefragmentAsync();
            var back = new byte[4 * cs];
            await image.ReadAsync(0, back);
            Assert.All(back.AsSpan(0, cs).ToArray(), b => Assert.Equal(0, b));
            Assert.All(back.AsSpan(cs, cs).ToArray(), b => Assert.Equal(0x11, b));
            Assert.All(back.AsSpan(2 * cs, cs).ToArray(), b => Assert.Equal(0x22, b));
            Assert.All(back.AsSpan(3 * cs, cs).ToArray(), b => Assert.Equal(0, b));
        }
        // Header, L1 and L2 (two clusters each), then guest 1, 2, 3 in order: guest 3's cluster is the last, and a hole.
        Assert.Equal(8L * cs, storage.Length);
        var (isData, run) = await storage.GetAllocationAsync(7L * cs, cs);
        Assert.False(isData, "the discarded cluster was filled with zeroes by the defrag");
        Assert.Equal(cs, run);
        await DefragLayout.AssertCleanAsync(storage);
    }

    [Fact]
    public async Task ACorruptImageIsRefusedBeforeAnythingMoves()
    {
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 8L << 20, ClusterSize = 4096, TableSize = 2 });
        await using (var image = await QedImage.OpenAsync(storage))
            for (int i = 7; i >= 0; i--) await image.WriteAsync(i * 4096L, new byte[4096]);
        // Point a second L2 entry at the first entry's cluster: a cluster referenced twice.
        var l2 = new byte[8];
        var l1 = new byte[8];
        await storage.ReadAsync(4096, l1);
        long table = BitConverter.ToInt64(l1);
        await storage.ReadAsync(table, l2);
        await storage.WriteAsync(table + 8 * 100, l2);
        var before = storage.ToArray();
        await using (var image = await QedImage.OpenAsync(storage))
        {
            var e = await Assert.ThrowsAsync<ImageFormatException>(() => image.DefragmentAsync());
            Assert.Contains("already in use", e.Message);
        }
        Assert.Equal(before, storage.ToArray());
    }

    /// <summary>Progress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    internal sealed class SyncProgress(Action<(long, long)> report) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value) => report((value.BytesDone, value.TotalBytes));
    }
}
