namespace Qed.Tests.ImageFileJobs;

/// <summary><see cref="ImageFile.CompareAsync(string, string, CompareOptions?, CancellationToken)"/>, measure and map on real files.</summary>
public sealed class CompareMeasureMapTests : ImageFileFixture
{
    [Fact]
    public async Task CompareFindsTheFirstDifferingSectorAcrossFormats()
    {
        string a = await QedAsync("a.qed", writes: [(1 << 20, 4096, 0x10)]);
        string b = await Qcow2Async("b.qcow2", writes: [(1 << 20, 4096, 0x10)]);
        Assert.True((await ImageFile.CompareAsync(a, b)).Identical);

        await WriteAsync("b.qcow2", ((1 << 20) + 1500, 1, 0x11));
        var result = await ImageFile.CompareAsync(a, b, new CompareOptions { SecondFormat = ImageFormat.Qcow2 });
        Assert.False(result.Identical);
        Assert.Equal((1L << 20) + 1024, result.MismatchOffset);
    }

    [Fact]
    public async Task StrictCompareTellsSizesApartWhereContentCompareDoesNot()
    {
        string a = await QedAsync("a.qed", writes: [(0, 4096, 1)]);
        string b = await QedAsync("b.qed", size: 2 * Size, writes: [(0, 4096, 1)]);
        var loose = await ImageFile.CompareAsync(a, b);
        Assert.True(loose.Identical && loose.SizeMismatch);
        var strict = await ImageFile.CompareAsync(a, b, new CompareOptions { Strict = true });
        Assert.False(strict.Identical);
    }

    [Fact]
    public async Task CompareOfOpenImagesAndCancellation()
    {
        string a = await QedAsync("a.qed", writes: [(0, 4096, 1)]);
        await using var x = await DiskImage.OpenAsync(a, new ImageOpenOptions { ReadOnly = true });
        Assert.True((await ImageFile.CompareAsync(x, x)).Identical);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ImageFile.CompareAsync(a, a, cancellationToken: cts.Token));
    }

    [Fact]
    public async Task MeasureCountsTheSourcesDataClustersOnTopOfAnEmptyImage()
    {
        string path = await QedAsync("a.qed", writes: [(0, 1 << 20, 1)]); // 16 clusters of 64 KiB
        var qcow2 = new MeasureOptions { Format = ImageFormat.Qcow2 };
        var empty = ImageFile.Measure(Size, qcow2);
        var measured = await ImageFile.MeasureAsync(path, qcow2);
        Assert.Equal(empty.Required + (16 << 16), measured.Required);
        Assert.Equal(empty.FullyAllocated, measured.FullyAllocated);
        Assert.Equal(new SizeMeasurement(Size, Size), await ImageFile.MeasureAsync(path)); // raw: the size itself
    }

    [Fact]
    public async Task MeasureRefusesBadGeometryAndSizes()
    {
        string path = await QedAsync("a.qed");
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.MeasureAsync(path, new MeasureOptions { Format = ImageFormat.Qed, ClusterSize = 1000 }));
        Assert.Throws<ArgumentException>(() => ImageFile.Measure(Size, new MeasureOptions { Format = ImageFormat.Qcow2, ClusterSize = 4 << 20 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageFile.Measure(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageFile.Measure(1, new MeasureOptions { Format = (ImageFormat)7 }));
    }

    [Fact]
    public async Task MapShowsEachLayersRunsInGuestOrder()
    {
        await QedAsync("base.qed", writes: [(0, 65536, 1)]);
        string top = await QedAsync("top.qed", backing: "base.qed", writes: [(2 << 20, 65536, 2)]);
        var runs = new List<ChainExtent>();
        await foreach (var run in ImageFile.MapAsync(top)) runs.Add(run);
        Assert.Equal(0, runs[0].Offset);
        Assert.Equal(Size, runs.Sum(r => r.Length));
        var data = runs.Where(r => r.Data).Select(r => (r.Offset, r.Length, r.Depth)).ToArray();
        Assert.Equal([(0L, 65536L, 1), (2L << 20, 65536L, 0)], data);

        var part = new List<ChainExtent>();
        await foreach (var run in ImageFile.MapAsync(top, new MapOptions { Offset = 2 << 20, Length = 65536 })) part.Add(run);
        Assert.Equal((2L << 20, 65536L, true), (part.Single().Offset, part.Single().Length, part.Single().Data));
    }

    [Fact]
    public async Task MapRefusesARangeOutsideTheImage()
    {
        string path = await QedAsync("a.qed");
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageFile.MapAsync(path, new MapOptions { Offset = -1 }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await foreach (var _ in ImageFile.MapAsync(path, new MapOptions { Offset = Size, Length = 1 })) { }
        });
    }
}
