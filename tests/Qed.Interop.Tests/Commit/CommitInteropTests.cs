using Qed.Interop.Tests.Support;
using Qed.Operations;

namespace Qed.Interop.Tests.Commit;

/// <summary>
/// <c>qed commit</c>: the base ends up holding what the overlay showed, the emptied overlay passes qemu-img check and
/// reads through to the base; a commit cancelled in the middle loses nothing.
/// </summary>
public class CommitInteropTests
{
    private static readonly string[] TopWrites = ["write -P 0x01 1000 3000", "write -z 1M 128k", "write -P 0x02 2M 1M", "write -P 0x03 3M 4k"];

    /// <summary>base.{fmt} full of 0x55 (4 MiB), top.qed over it with <see cref="TopWrites"/>, want.raw the model.</summary>
    private static void Build(TempDir dir, string baseFormat, string topMaker)
    {
        Tool.Ok(dir.QemuImg("create", "-f", baseFormat, $"base.{baseFormat}", "4M"));
        Tool.Ok(dir.QemuIo("-f", baseFormat, "-c", "write -P 0x55 0 3M", $"base.{baseFormat}"));
        string[] create = ["create", "-f", "qed", "-b", $"base.{baseFormat}", "-F", baseFormat, "top.qed"];
        Tool.Ok(topMaker == "qed" ? dir.Qed(create) : dir.QemuImg(create));
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(TopWrites), "top.qed"]));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));
    }

    [Theory]
    [InlineData("raw", "qemu-img")]
    [InlineData("qed", "qemu-img")]
    [InlineData("qed", "qed")]
    [InlineData("qcow2", "qemu-img")]
    public void CommitWritesTheBaseAndEmptiesTheOverlay(string baseFormat, string topMaker)
    {
        using var dir = new TempDir();
        Build(dir, baseFormat, topMaker);
        var result = Tool.Ok(dir.Qed("commit", "top.qed"));
        Assert.Contains("Image committed.", result.StdOut);

        Tool.Ok(dir.QemuImg("compare", "-f", baseFormat, "-F", "raw", $"base.{baseFormat}", "want.raw"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "top.qed");
        if (baseFormat == "qed") QemuCheck.AssertClean(dir, "base.qed");
        else if (baseFormat == "qcow2") Tool.Ok(dir.QemuImg("check", "-f", "qcow2", "base.qcow2")); // raw has no check
        // Emptied: only the header and the L1 table remain, and the map shows nothing at depth 0.
        Assert.Equal(327680, new FileInfo(dir["top.qed"]).Length);
        Assert.DoesNotContain("\"depth\": 0, \"present\": true", Tool.Ok(dir.QemuImg("map", "--output=json", "top.qed")).StdOut);
    }

    [Fact]
    public void DashDKeepsTheOverlayAndDashBPicksADeeperBase()
    {
        using var dir = new TempDir();
        Build(dir, "raw", "qemu-img");
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "top.qed", "-F", "qed", "upper.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x09 3500k 100k", "upper.qed"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x09 3500k 100k", "want.raw"));
        string topHash = dir.Hash("top.qed");
        long upperLength = new FileInfo(dir["upper.qed"]).Length;

        Tool.Ok(dir.Qed("commit", "-d", "-b", "base.raw", "upper.qed"));
        Tool.Ok(dir.QemuImg("compare", "-f", "raw", "-F", "raw", "base.raw", "want.raw"));
        Assert.Equal(upperLength, new FileInfo(dir["upper.qed"]).Length);
        Assert.Equal(topHash, dir.Hash("top.qed")); // the layer between is only read
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "upper.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "upper.qed");
    }

    /// <summary>base.qed &lt;- mid.qed &lt;- top.qed, each layer writing its own MiB; top.raw and mid.raw what they read.</summary>
    private static void BuildThreeLayers(TempDir dir)
    {
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x11 0 2M", "base.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "mid.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x22 1M 2M", "mid.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "mid.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 2M 2M", "-c", "write -z 0 64k", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "top.raw"));
    }

    [Fact]
    public void DashBOverAMiddleLayerLeavesTheTopReadingAsBefore()
    {
        // qemu-img commit -b implies -d: the top keeps its data (it still names mid as its backing file, and mid
        // is now stale where top had data, as qemu-img documents). Emptying top here would make it read mid.
        using var dir = new TempDir();
        BuildThreeLayers(dir);
        string topHash = dir.Hash("top.qed");

        var result = Tool.Ok(dir.Qed("commit", "-b", "base.qed", "top.qed"));
        Assert.Contains("Image committed.", result.StdOut);
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "top.raw"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "base.qed", "top.raw"));
        Assert.Equal(topHash, dir.Hash("top.qed"));
        QemuCheck.AssertClean(dir, "base.qed");

        // qemu-img does the same to a copy of the chain made the same way.
        using var peer = new TempDir();
        BuildThreeLayers(peer);
        Tool.Ok(peer.QemuImg("commit", "-b", "base.qed", "top.qed"));
        Tool.Ok(peer.QemuImg("compare", "-F", "raw", "top.qed", "top.raw"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "qed", "top.qed", peer["top.qed"]));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "qed", "base.qed", peer["base.qed"]));
    }

    [Fact]
    public void DashBNamingTheImmediateBackingFileAlsoKeepsTheTop()
    {
        using var dir = new TempDir();
        Build(dir, "qed", "qemu-img");
        string topHash = dir.Hash("top.qed");
        Tool.Ok(dir.Qed("commit", "-b", "base.qed", "top.qed"));
        Assert.Equal(topHash, dir.Hash("top.qed")); // as qemu-img: -b implies -d
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "base.qed", "want.raw"));
    }

    [Fact]
    public async Task TheLibraryNeverEmptiesATopWhoseBaseIsDeeperThanItsBackingFile()
    {
        using var dir = new TempDir();
        BuildThreeLayers(dir);
        await ImageFile.CommitAsync(dir["top.qed"], new CommitOptions { Base = dir["base.qed"], KeepTop = false });
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "top.raw"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "base.qed", "top.raw"));
    }

    [Fact]
    public void ABaseShorterThanTheOverlayIsGrownFirst()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "top.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 3M 64k", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));
        Tool.Ok(dir.Qed("commit", "top.qed"));
        Assert.True(dir.Bytes("want.raw").AsSpan().SequenceEqual(dir.Bytes("base.raw")));
        QemuCheck.AssertClean(dir, "top.qed");
    }

    [Fact]
    public async Task ACancelledCommitLosesNothing()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "64M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x55 0 64M", "base.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x01 0 20M", "-c", "write -z 30M 4M", "-c", "write -P 0x02 40M 20M", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));
        string topHash = dir.Hash("top.qed");

        using var cts = new CancellationTokenSource();
        long seen = 0;
        var progress = new SyncProgress(p => { if (p.BytesDone > 0 && p.BytesDone < p.TotalBytes && ++seen == 5) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            ImageFile.CommitAsync(dir["top.qed"], new CommitOptions { Parallelism = 1 }, progress, cts.Token));

        // The overlay is untouched and still reads as before; the base holds part of the data, consistently.
        Assert.Equal(topHash, dir.Hash("top.qed"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "top.qed");
        QemuCheck.AssertClean(dir, "base.qed");

        // Running it again completes the job.
        Tool.Ok(dir.Qed("commit", "top.qed"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "base.qed", "want.raw"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "want.raw"));
    }

    [Fact]
    public void AnImageWithoutBackingFileIsRefused()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "1M"));
        var result = dir.Qed("commit", "img.qed");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("does not have a backing file", result.StdErr);
    }

    /// <summary>A base that is not in the chain, or no chain at all: qemu-img commit's message and exit code, files untouched.</summary>
    [Theory]
    [InlineData("-b", "other.qed", "top.qed")]
    [InlineData("-b", "nonexist", "top.qed")]
    [InlineData("-b", "top.qed", "top.qed")]
    [InlineData("-b", "base.qed", "other.qed")]
    [InlineData(null, null, "other.qed")]
    public void MissingBaseSameAsQemuImg(string? flag, string? baseName, string image)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "other.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 7 0 64k", "top.qed"));
        string before = dir.Hash("top.qed") + dir.Hash("base.qed") + dir.Hash("other.qed");
        string[] args = flag is null ? ["commit", image] : ["commit", flag, baseName!, image];
        var ours = dir.Qed(args);
        Assert.Equal(before, dir.Hash("top.qed") + dir.Hash("base.qed") + dir.Hash("other.qed"));
        var theirs = dir.QemuImg(args);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(theirs.StdErr.Replace("qemu-img: ", ""), ours.StdErr.Replace("qed: ", ""));
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool, too late to cancel mid-copy).</summary>
    private sealed class SyncProgress(Action<ImageProgress> action) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value) { lock (this) action(value); }
    }
}
