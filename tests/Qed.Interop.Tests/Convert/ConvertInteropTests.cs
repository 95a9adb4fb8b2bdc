using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Convert;

/// <summary>
/// Images written by <c>qed convert</c> pass <c>qemu-img check</c> and compare equal to their source; zero runs are
/// not written; with -B only what differs from the backing file is.
/// </summary>
public class ConvertInteropTests
{
    public static TheoryData<Scenario> Scenarios => new(Scenario.All.Where(s => !s.QemuGetsItWrong));

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void ConvertedImagesPassCheckAndCompare(Scenario scenario)
    {
        using var dir = new TempDir();
        scenario.BuildBacking(dir);
        scenario.BuildReference(dir);
        scenario.CreateImage(dir, "theirs.qed", args => dir.QemuImg(args));
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(scenario.Commands), "theirs.qed"]));

        // QED (with its backing chain) to QED, raw to QED, QED to raw.
        Tool.Ok(dir.Qed("convert", "-O", "qed", "theirs.qed", "a.qed"));
        Tool.Ok(dir.Qed("convert", "-f", "raw", "-O", "qed", "-o", "cluster_size=4k,table_size=2", "ref.raw", "b.qed"));
        Tool.Ok(dir.Qed("convert", "-O", "raw", "theirs.qed", "c.raw"));
        foreach (string qed in new[] { "a.qed", "b.qed" })
        {
            QemuCheck.AssertClean(dir, qed);
            Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", qed, "ref.raw"));
            Tool.Ok(dir.QemuImg("compare", qed, "theirs.qed"));
        }
        Assert.True(dir.Bytes("ref.raw").AsSpan().SequenceEqual(dir.Bytes("c.raw")));
    }

    [Fact]
    public void ZeroRunsAreNotWrittenAndTargetsStaySparse()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "src.raw", "64M"));
        // 1 MiB of data at 10M, and 4 MiB of zeroes written as data at 20M (allocated in the file, but all zero).
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x61 10M 1M", "-c", "write -P 0 20M 4M", "-c", "write -P 0x62 40M 4k", "src.raw"));
        Tool.Ok(dir.Qed("convert", "-f", "raw", "-O", "qed", "src.raw", "dst.qed"));
        Tool.Ok(dir.Qed("convert", "-f", "raw", "-O", "raw", "src.raw", "dst.raw"));
        Tool.Ok(dir.QemuImg("compare", "-f", "raw", "-F", "qed", "src.raw", "dst.qed"));
        Tool.Ok(dir.QemuImg("compare", "-f", "raw", "-F", "raw", "src.raw", "dst.raw"));
        QemuCheck.AssertClean(dir, "dst.qed");

        // Only the 1 MiB and the 4 KiB (one 64 KiB cluster) are data in the QED target, per qemu-img map.
        var data = DataRanges(dir, "dst.qed");
        Assert.Equal([(10L << 20, 1L << 20), (40L << 20, 65536L)], data);
        // The raw target holds about 1 MiB + 4 KiB on disk (the filesystem may round up a little).
        long actual = ActualSize(dir, "dst.raw");
        Assert.InRange(actual, (1 << 20) + 4096, 2 << 20);
    }

    [Fact]
    public void WithBackingOnlyDifferingClustersAreWrittenAndZeroClustersHideTheBase()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "4M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 4M", "base.raw"));
        // The wanted content: the base with one changed 4 KiB piece at 1M, zeroes over 2M..2M+128k, and a changed byte at 3M+5.
        Tool.Ok(dir.QemuImg("convert", "-f", "raw", "-O", "raw", "base.raw", "want.raw"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x01 1M 4k", "-c", "write -z 2M 128k", "-c", "write -P 0x02 3145733 1", "want.raw"));

        Tool.Ok(dir.Qed("convert", "-f", "raw", "-O", "qed", "-B", "base.raw", "-F", "raw", "want.raw", "out.qed"));
        QemuCheck.AssertClean(dir, "out.qed");
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "out.qed", "want.raw"));

        using var map = JsonDocument.Parse(Tool.Ok(dir.QemuImg("map", "--output=json", "out.qed")).StdOut);
        var top = map.RootElement.EnumerateArray().Where(e => e.GetProperty("depth").GetInt32() == 0)
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("zero").GetBoolean()))
            .ToList();
        // Two data clusters (1M, 3M) and two zero clusters (2M..2M+128k); everything else comes from the base.
        Assert.Equal([(1L << 20, 65536L, false), (2L << 20, 131072L, true), (3L << 20, 65536L, false)], top);
    }

    [Fact]
    public void IntoAnExistingTargetOverwritesEverything()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "src.raw", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x31 1M 1M", "src.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "dst.qed", "8M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0xff 0 8M", "dst.qed"));
        Tool.Ok(dir.Qed("convert", "-n", "-f", "raw", "-O", "qed", "src.raw", "dst.qed"));
        Tool.Ok(dir.QemuImg("compare", "-f", "raw", "-F", "qed", "src.raw", "dst.qed"));
        QemuCheck.AssertClean(dir, "dst.qed");
    }

    [Fact]
    public void ProgressGoesToStderrWhenAsked()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "src.raw", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x31 1M 3M", "src.raw"));
        var result = Tool.Ok(dir.Qed("convert", "-p", "-O", "qed", "src.raw", "dst.qed"));
        Assert.Contains("(100.00/100%)", result.StdErr);
        Assert.Equal("", result.StdOut);
        var quiet = Tool.Ok(dir.Qed("convert", "-O", "qed", "src.raw", "dst2.qed"));
        Assert.Equal("", quiet.StdErr);
    }

    [Fact]
    public void MissingBackingFileFailsWithoutCreatingTheTarget()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "ov.qed"));
        File.Delete(dir["base.raw"]);
        var result = dir.Qed("convert", "-O", "raw", "ov.qed", "out.raw");
        Assert.Equal(1, result.ExitCode);
        Assert.Single(result.StdErr.Trim().Split('\n'));
        Assert.Contains("base.raw", result.StdErr);
        Assert.False(File.Exists(dir["out.raw"]));
    }

    [Theory]
    [InlineData("ov.qed")]
    [InlineData("base.raw")]
    [InlineData("./sub/../base.raw")]
    public void RefusesToWriteOverAnImageOfTheSourceChain(string target)
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["sub"]);
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "ov.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 64k", "ov.qed"));
        string ov = dir.Hash("ov.qed"), raw = dir.Hash("base.raw");
        // Without -U the source's read lock refuses the target (qemu-img's words); with -U, qed's own check.
        foreach (string[] extra in new[] { Array.Empty<string>(), ["-n"], ["-U"], ["-U", "-n"] })
        {
            var result = dir.Qed(["convert", .. extra, "-O", "raw", "ov.qed", target]);
            Assert.Equal(1, result.ExitCode);
            Assert.Contains(extra.Contains("-U") ? "part of the source image chain" : "Failed to get \"write\" lock", result.StdErr);
            Assert.Equal(ov, dir.Hash("ov.qed"));
            Assert.Equal(raw, dir.Hash("base.raw"));
        }
    }

    private static List<(long, long)> DataRanges(TempDir dir, string image)
    {
        using var map = JsonDocument.Parse(Tool.Ok(dir.QemuImg("map", "--output=json", image)).StdOut);
        return map.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean())
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64())).ToList();
    }

    private static long ActualSize(TempDir dir, string image)
    {
        using var info = JsonDocument.Parse(Tool.Ok(dir.QemuImg("info", "--output=json", image)).StdOut);
        return info.RootElement.GetProperty("actual-size").GetInt64();
    }
}
