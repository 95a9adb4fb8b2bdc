namespace Qed.Tests.ImageFileJobs;

/// <summary>
/// <see cref="ImageFile.ConvertAsync(string, string, ImageFormat, ConvertOptions?, IProgress{ImageProgress}?, CancellationToken)"/>
/// and its open-image twin: the target reads as the source and stays sparse, progress runs from 0 to the size, and an
/// existing file, the source itself, bad options and a cancellation never leave a changed or half-written file.
/// </summary>
public sealed class ConvertTests : ImageFileFixture
{
    [Fact]
    public async Task QedToQcow2ReadsTheSameStaysSparseAndReportsProgress()
    {
        string source = await QedAsync("src.qed", writes: [(1 << 20, 64 << 10, 0xab), (5 << 20, 4096, 0x01)]);
        var reports = new Reports();

        await ImageFile.ConvertAsync(source, P("dst.qcow2"), ImageFormat.Qcow2, progress: reports);

        Assert.Equal(await ContentAsync(source), await ContentAsync(P("dst.qcow2")));
        Assert.Equal(ImageFormat.Qcow2, await ImageFile.CheckAsync(P("dst.qcow2")) is { IsClean: true } check ? check.Format : default(ImageFormat?));
        reports.AssertStartAndEnd(Size);
        // Sparse: only the two written clusters hold data.
        var data = new List<ChainExtent>();
        await foreach (var run in ImageFile.MapAsync(P("dst.qcow2"))) if (run.Data) data.Add(run);
        Assert.Equal([(1L << 20, 64L << 10), (5L << 20, 64L << 10)], data.Select(r => (r.Offset, r.Length)));
    }

    [Theory]
    [InlineData(ImageFormat.Qed)]
    [InlineData(ImageFormat.Raw)]
    public async Task EveryTargetFormatReadsAsTheSource(ImageFormat format)
    {
        string source = await Qcow2Async("src.qcow2", writes: [(0, 1000, 0x5a), (3 << 20, 70000, 0xc3)]);
        await ImageFile.ConvertAsync(source, P("dst"), format, new ConvertOptions
        {
            // Raw has no clusters: a cluster size for it is refused (RawTakesNoBackingFileNorClusterSize).
            Target = format == ImageFormat.Raw ? null : new ImageCreateOptions { ClusterSize = 4096 },
            SourceFormat = ImageFormat.Qcow2,
        });
        Assert.Equal(await ContentAsync(source), await ContentAsync(P("dst")));
        Assert.True((await ImageFile.CompareAsync(source, P("dst"))).Identical);
    }

    [Fact]
    public async Task TheTargetsFormatOptionsAreApplied()
    {
        string source = await QedAsync("src.qed", writes: [(0, 1000, 0x5a)]);
        await ImageFile.ConvertAsync(source, P("dst.qcow2"), ImageFormat.Qcow2, new ConvertOptions
        {
            Target = new Qed.Formats.Qcow2.Qcow2CreateOptions { ClusterSize = 8192, Version = 2, Size = 1 },
        });
        await using var target = await DiskImage.OpenAsync(P("dst.qcow2"), new ImageOpenOptions { ReadOnly = true });
        var qcow2 = Assert.IsType<Qed.Formats.Qcow2.Qcow2Image>(target);
        Assert.Equal(8192, qcow2.ClusterSize);
        Assert.Equal(2, qcow2.Version);
        Assert.Equal(Size, qcow2.Size); // the source's size, whatever the options said
    }

    [Fact]
    public async Task AnExistingDestinationIsRefusedAndLeftUntouched()
    {
        string source = await QedAsync("src.qed", writes: [(0, 4096, 0x11)]);
        File.WriteAllBytes(P("precious"), [1, 2, 3]);
        var e = await Assert.ThrowsAsync<IOException>(() => ImageFile.ConvertAsync(source, P("precious"), ImageFormat.Raw));
        Assert.Contains("already exists", e.Message);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(P("precious")));
    }

    [Fact]
    public async Task TheSourceOrItsBackingFileAsDestinationIsRefusedUntouched()
    {
        string baseImage = await QedAsync("base.qed", writes: [(0, 4096, 0x22)]);
        string top = await QedAsync("top.qed", backing: "base.qed", writes: [(1 << 20, 4096, 0x33)]);
        string before = Hash(baseImage);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ConvertAsync(top, baseImage, ImageFormat.Raw));
        Assert.Contains("backing chain", e.Message);
        Assert.Equal(before, Hash(baseImage));
    }

    [Fact]
    public async Task ACancelledConvertRemovesTheFileItCreated()
    {
        string source = await QedAsync("src.qed", size: 32 << 20, writes: [(0, 24 << 20, 0x44)]);
        using var cts = new CancellationTokenSource();
        var reports = new Reports(p => { if (p.BytesDone > 0) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            ImageFile.ConvertAsync(source, P("dst.qed"), ImageFormat.Qed, new ConvertOptions { Parallelism = 1 }, reports, cts.Token));
        Assert.False(File.Exists(P("dst.qed")));
        Assert.True(reports.All.Max(p => p.BytesDone) < 32 << 20, "the copy ran to the end before the cancellation was seen");
    }

    [Fact]
    public async Task InvalidOptionsAreRefusedBeforeAnyFileIsCreated()
    {
        string source = await QedAsync("src.qed");
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.ConvertAsync(source, P("a"), ImageFormat.Qed, new ConvertOptions { MinSparse = -1 }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.ConvertAsync(source, P("b"), ImageFormat.Qed, new ConvertOptions { ChunkSize = 3000 }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.ConvertAsync(source, P("c"), (ImageFormat)42));
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ConvertAsync(source, P("d"), ImageFormat.Qed, new ConvertOptions { Target = new ImageCreateOptions { ClusterSize = 1000 } }));
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ConvertAsync("", P("e"), ImageFormat.Qed));
        // Another format's options, and a backing file (a convert by path makes a standalone image).
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ConvertAsync(source, P("f"), ImageFormat.Qed, new ConvertOptions { Target = new Qed.Formats.Qcow2.Qcow2CreateOptions() }));
        var backed = await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ConvertAsync(source, P("g"), ImageFormat.Qed, new ConvertOptions { Target = new ImageCreateOptions { BackingFile = source } }));
        Assert.Contains("BackingFile", backed.Message);
        Assert.Equal([source], Directory.GetFiles(Path.GetDirectoryName(source)!));
    }

    /// <summary>
    /// Into an open image that already holds data, zeroes of the source must overwrite it: the facade never lets the
    /// copy assume a zeroed target (with that assumption, the 0xff below the source's zeroes would survive).
    /// </summary>
    [Fact]
    public async Task IntoAnOpenImageWithDataTheSourcesZeroesOverwriteIt()
    {
        string source = await QedAsync("src.qed", writes: [(2 << 20, 4096, 0x66)]);
        string target = await QedAsync("dst.qed", writes: [(0, 4 << 20, 0xff)]);
        await using (var from = await DiskImage.OpenAsync(source, new ImageOpenOptions { ReadOnly = true }))
        await using (var to = await DiskImage.OpenAsync(target))
            await ImageFile.ConvertAsync(from, to);
        Assert.Equal(await ContentAsync(source), await ContentAsync(target));
    }

    [Fact]
    public async Task IntoAReadOnlyImageIsRefused()
    {
        string source = await QedAsync("src.qed");
        await using var from = await DiskImage.OpenAsync(source, new ImageOpenOptions { ReadOnly = true });
        await using var to = await DiskImage.OpenAsync(await QedAsync("dst.qed"), new ImageOpenOptions { ReadOnly = true });
        await Assert.ThrowsAsync<InvalidOperationException>(() => ImageFile.ConvertAsync(from, to));
    }
}
