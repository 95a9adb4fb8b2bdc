using Qed.Formats.Qed;
using Qed.Operations.Migration;

namespace Qed.Tests.ImageFileJobs;

/// <summary>
/// The jobs that change an image file: resize, rebase, commit, defragment, stream and migrate, each on real files,
/// checked by what the image reads afterwards, with cancellation and refusals that change nothing.
/// </summary>
public sealed class ChangeJobsTests : ImageFileFixture
{
    [Fact]
    public async Task ResizeGrowsAndShrinksOnlyWhenAllowed()
    {
        string path = await QedAsync("a.qed", writes: [(7 << 20, 4096, 3)]);
        await ImageFile.ResizeAsync(path, 16 << 20);
        var grown = await ContentAsync(path);
        Assert.Equal(16 << 20, grown.Length);
        Assert.DoesNotContain(grown.AsSpan(8 << 20).ToArray(), b => b != 0);

        string before = Hash(path);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.ResizeAsync(path, 4 << 20));
        Assert.Contains("ResizeOptions.AllowShrink", e.Message);
        Assert.Equal(before, Hash(path));

        await ImageFile.ResizeAsync(path, 4 << 20, new ResizeOptions { AllowShrink = true, Format = ImageFormat.Qed });
        Assert.Equal(4 << 20, (await ContentAsync(path)).Length);
        Assert.True((await ImageFile.CheckAsync(path)).IsClean);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.ResizeAsync(path, -1));
    }

    [Fact]
    public async Task ASafeRebaseOntoNothingKeepsWhatTheImageReads()
    {
        await QedAsync("base.qed", writes: [(0, 1 << 20, 0x31)]);
        string top = await QedAsync("top.qed", backing: "base.qed", writes: [(512 << 10, 4096, 0x32)]);
        var before = await ContentAsync(top);
        var reports = new Reports();
        await ImageFile.RebaseAsync(top, null, progress: reports);
        await using (var image = (QedImage)await DiskImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = true }))
            Assert.Null(image.BackingFilename);
        Assert.Equal(before, await ContentAsync(top));
        Assert.Equal(Size, reports.All.Max(p => p.BytesDone));
    }

    [Fact]
    public async Task AnUnsafeRebaseOnlyRewritesTheName()
    {
        await QedAsync("base.qed", writes: [(0, 4096, 0x41)]);
        await QedAsync("other.qed", writes: [(0, 4096, 0x42)]);
        string top = await QedAsync("top.qed", backing: "base.qed");
        await ImageFile.RebaseAsync(top, "other.qed", new RebaseOptions { Unsafe = true, BackingFormat = ImageFormat.Qed });
        Assert.Equal(0x42, (await ContentAsync(top))[0]); // nothing copied: the new backing file shows through
        await Assert.ThrowsAsync<NotSupportedException>(() => ImageFile.RebaseAsync(top, null, new RebaseOptions { Format = ImageFormat.Raw }));
    }

    [Fact]
    public async Task CommitWritesTheImageIntoItsBaseAndEmptiesIt()
    {
        string baseImage = await QedAsync("base.qed", writes: [(0, 1 << 20, 0x51)]);
        string top = await QedAsync("top.qed", backing: "base.qed", writes: [(256 << 10, 65536, 0x52), (5 << 20, 65536, 0x53)]);
        var want = await ContentAsync(top);
        var reports = new Reports();
        string committed = await ImageFile.CommitAsync(top, progress: reports);
        Assert.Equal(Path.GetFullPath(baseImage), Path.GetFullPath(committed));
        Assert.Equal(want, await ContentAsync(baseImage));
        Assert.Equal(want, await ContentAsync(top));
        Assert.DoesNotContain(await DataRunsAsync(top), r => r.Depth == 0); // emptied: it reads through
        reports.AssertStartAndEnd(Size);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.CommitAsync(top, new CommitOptions { Parallelism = 0 }));
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.CommitAsync(baseImage)); // no backing file
    }

    [Fact]
    public async Task DefragmentPutsClustersInGuestOrderAndReadsTheSame()
    {
        // Written back to front: the data clusters lie in the file in the reverse of guest order.
        var writes = Enumerable.Range(0, 16).Reverse().Select(i => ((long)i << 19, 65536, (byte)(i + 1))).ToArray();
        string path = await QedAsync("a.qed", writes: writes);
        var want = await ContentAsync(path);
        var reports = new Reports();
        var result = await ImageFile.DefragmentAsync(path, reports);
        Assert.Equal(want, await ContentAsync(path));
        Assert.True(result.FileBytesAfter <= result.FileBytesBefore);
        var offsets = (await DataRunsAsync(path)).Select(r => r.FileOffset).ToArray();
        Assert.Equal(offsets.Order(), offsets);
        Assert.NotEmpty(reports.All);
        Assert.Equal(reports.All[^1].TotalBytes, reports.All[^1].BytesDone);

        File.WriteAllBytes(P("a.raw"), new byte[65536]);
        await Assert.ThrowsAsync<NotSupportedException>(() => ImageFile.DefragmentAsync(P("a.raw")));
    }

    [Fact]
    public async Task StreamCopiesTheChainInAndDropsTheBackingFile()
    {
        await QedAsync("base.qed", writes: [(0, 1 << 20, 0x61)]);
        string top = await QedAsync("top.qed", backing: "base.qed", writes: [(3 << 20, 4096, 0x62)]);
        var want = await ContentAsync(top);

        using (var cts = new CancellationTokenSource())
        {
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ImageFile.StreamAsync(top, cancellationToken: cts.Token));
        }
        await using (var image = (QedImage)await DiskImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = true }))
            Assert.Equal("base.qed", image.BackingFilename);

        var reports = new Reports();
        await ImageFile.StreamAsync(top, progress: reports);
        File.Delete(P("base.qed"));
        Assert.Equal(want, await ContentAsync(top)); // reads the same without the old backing file
        reports.AssertStartAndEnd(Size);
    }

    [Fact]
    public async Task AnOpenImageIsStreamedIntoWhileItStaysWritable()
    {
        await QedAsync("base.qed", writes: [(0, 1 << 20, 0x63)]);
        string top = await QedAsync("top.qed", backing: "base.qed");
        await using (var image = (QedImage)await DiskImage.OpenAsync(top))
        {
            await ImageFile.StreamAsync(image);
            Assert.Null(image.BackingFilename);
            await image.WriteAsync(4096, new byte[] { 1 }); // still open for writing
        }
        File.Delete(P("base.qed"));
        var content = await ContentAsync(top);
        Assert.Equal([0x63, 1, 0x63], new[] { content[0], content[4096], content[(1 << 20) - 1] });

        await using var raw = await DiskImage.OpenAsync(await QedAsync("x.qed"), new ImageOpenOptions { ReadOnly = true });
        await Assert.ThrowsAsync<InvalidOperationException>(() => ImageFile.StreamAsync(raw));
    }

    [Fact]
    public async Task MigrateConvertsVerifiesAndReportsProgressPerImage()
    {
        Directory.CreateDirectory(P("vault"));
        await QedAsync("vault/base.qed", writes: [(0, 65536, 0x71)]);
        await QedAsync("vault/top.qed", backing: "base.qed", writes: [(1 << 20, 65536, 0x72)]);
        var want = await ContentAsync(P("vault/top.qed"));
        var reports = new Reports();
        var report = await ImageFile.MigrateAsync([P("vault")], P("out"), new MigrationOptions { Jobs = 1 }, reports);
        Assert.True(report.AllVerified, string.Join("; ", report.Entries.Select(e => $"{e.Source}: {e.Outcome} {e.Error}")));
        Assert.Equal(want, await ContentAsync(P("out/top.qcow2")));
        Assert.Equal(2 * Size, reports.All.Max(p => p.BytesDone));
        Assert.Contains(reports.All, p => p.CurrentImage == P("vault/top.qed"));
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.MigrateAsync([P("vault")], P("out2"), new MigrationOptions { TargetFormat = ImageFormat.Qed }));
    }

    private static async Task<List<ChainExtent>> DataRunsAsync(string path)
    {
        var runs = new List<ChainExtent>();
        await foreach (var run in ImageFile.MapAsync(path)) if (run.Data) runs.Add(run);
        return runs;
    }
}
