using Qed.Check;

namespace Qed.Tests.ImageFileJobs;

/// <summary>
/// <see cref="ImageFile.CheckAsync(string, CheckOptions?, IProgress{ImageProgress}?, CancellationToken)"/> on QED and
/// qcow2 files, its repair, its refusal of raw, and the check of an image that is already open.
/// </summary>
public sealed class CheckTests : ImageFileFixture
{
    [Fact]
    public async Task ACleanQedImageIsCleanAndProgressRunsToItsSize()
    {
        string path = await QedAsync("a.qed", writes: [(0, 4096, 1), (6 << 20, 4096, 2)]);
        var reports = new Reports();
        var result = await ImageFile.CheckAsync(path, progress: reports);
        Assert.True(result.IsClean, string.Join("; ", result.Messages));
        Assert.Equal(ImageFormat.Qed, result.Format);
        Assert.Equal(2, result.AllocatedClusters);
        reports.AssertStartAndEnd(Size);
    }

    [Fact]
    public async Task ALeakIsFoundAndRepairedWithRepairLeaksButNotWithoutIt()
    {
        string path = await QedAsync("a.qed", writes: [(0, 4096, 1)]);
        using (var f = new FileStream(path, FileMode.Append)) f.Write(new byte[65536]); // a cluster nothing references
        string before = Hash(path);

        var found = await ImageFile.CheckAsync(path);
        Assert.Equal(1, found.Leaks);
        Assert.False(found.IsClean);
        Assert.Equal(before, Hash(path)); // a check without repair opens the file read-only

        var repaired = await ImageFile.CheckAsync(path, new CheckOptions { Repair = CheckRepair.Leaks });
        Assert.Equal(1, repaired.LeaksFixed);
        Assert.True((await ImageFile.CheckAsync(path)).IsClean);
    }

    [Fact]
    public async Task Qcow2IsCheckedWithItsFormatNamed()
    {
        string path = await Qcow2Async("a.qcow2", writes: [(1 << 20, 65536, 7)]);
        var reports = new Reports();
        var result = await ImageFile.CheckAsync(path, new CheckOptions { Format = ImageFormat.Qcow2 }, reports);
        Assert.True(result.IsClean, string.Join("; ", result.Messages));
        Assert.Equal(ImageFormat.Qcow2, result.Format);
        reports.AssertStartAndEnd(Size);
    }

    [Fact]
    public async Task RawIsRefusedNamingRawAndLeftUntouched()
    {
        File.WriteAllBytes(P("a.raw"), new byte[1 << 20]);
        var probed = await Assert.ThrowsAsync<NotSupportedException>(() => ImageFile.CheckAsync(P("a.raw")));
        Assert.Contains("raw", probed.Message);
        await Assert.ThrowsAsync<NotSupportedException>(() => ImageFile.CheckAsync(P("a.raw"), new CheckOptions { Format = ImageFormat.Raw, Repair = CheckRepair.All }));
        Assert.Equal(new byte[1 << 20], File.ReadAllBytes(P("a.raw")));
    }

    [Fact]
    public async Task BadOptionsAndAMissingFileAreRefused()
    {
        string path = await QedAsync("a.qed");
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageFile.CheckAsync(path, new CheckOptions { Repair = (CheckRepair)9 }));
        await Assert.ThrowsAsync<FileNotFoundException>(() => ImageFile.CheckAsync(P("missing.qed")));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ImageFile.CheckAsync(path, cancellationToken: cts.Token));
    }

    [Fact]
    public async Task AnOpenImageIsCheckedAfterItsWritesAreFlushedAndNeverRepaired()
    {
        string path = await QedAsync("a.qed");
        await using var image = await DiskImage.OpenAsync(path);
        await image.WriteAsync(3 << 20, new byte[65536].Select(_ => (byte)9).ToArray());
        var result = await ImageFile.CheckAsync(image);
        Assert.True(result.IsClean, $"{result.Leaks} leaks, {result.Corruptions} corruptions, {result.CheckErrors} errors, {result.Failure}: " + string.Join("; ", result.Messages));
        Assert.Equal(1, result.AllocatedClusters); // the write was flushed before the check read the tables
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.CheckAsync(image, new CheckOptions { Repair = CheckRepair.All }));
        await Assert.ThrowsAsync<ArgumentException>(() => ImageFile.CheckAsync(image, new CheckOptions { Format = ImageFormat.Qcow2 }));
    }

    [Fact]
    public async Task AnOpenRawImageIsRefused()
    {
        File.WriteAllBytes(P("a.raw"), new byte[4096]);
        await using var image = await DiskImage.OpenAsync(P("a.raw"), new ImageOpenOptions { Format = ImageFormat.Raw, ReadOnly = true });
        await Assert.ThrowsAsync<NotSupportedException>(() => ImageFile.CheckAsync(image));
    }

    [Fact]
    public async Task TheResultsMessagesCannotBeChangedByCallers()
    {
        string path = await QedAsync("a.qed");
        using (var f = new FileStream(path, FileMode.Append)) f.Write(new byte[65536]);
        var result = await ImageFile.CheckAsync(path, new CheckOptions { Repair = CheckRepair.Leaks }); // says what it repaired
        Assert.NotEmpty(result.Messages);
        Assert.False(result.Messages is List<string>);
        Assert.Throws<NotSupportedException>(() => ((IList<string>)result.Messages).Add("x"));
    }
}
