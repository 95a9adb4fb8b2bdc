using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Bench;

/// <summary>
/// <c>qed bench</c> runs qemu-img bench's workload: the same requests at the same offsets (wrapping at the end of the
/// image), announced in the same words. Write runs are compared by what they leave in the image.
/// </summary>
public class BenchInteropTests
{
    [Theory]
    [InlineData("qed", new[] { "-c", "300", "-d", "16", "-s", "4k", "-S", "64k" })]
    [InlineData("qed", new[] { "-c", "700", "-d", "4", "-s", "12k", "-S", "100000", "-o", "1M" })] // wraps twice, unaligned
    [InlineData("qed", new[] { "-c", "50", "-d", "8", "-s", "64k", "--flush-interval", "9" })]
    [InlineData("qed", new[] { "-c", "50", "-d", "8", "-s", "64k", "--flush-interval", "9", "--no-drain" })]
    [InlineData("raw", new[] { "-c", "333", "-d", "1", "-s", "1k", "-S", "77777" })]
    public void WritesWhatQemuImgBenchWrites(string format, string[] workload)
    {
        using var dir = new TempDir();
        foreach (string name in new[] { "ours", "theirs" })
            Tool.Ok(dir.QemuImg("create", "-q", "-f", format, $"{name}.{format}", "24M"));
        string[] args = ["bench", "-f", format, "-w", "--pattern", "165", "-t", "writeback", .. workload];
        var ours = Tool.Ok(dir.Qed([.. args, $"ours.{format}"]));
        var theirs = Tool.Ok(dir.QemuImg([.. args, $"theirs.{format}"]));

        Assert.Equal(Announcement(theirs.StdOut), Announcement(ours.StdOut));
        Assert.Matches(@"Run completed in \d+\.\d{3} seconds\.", ours.StdOut);
        var same = dir.QemuImg("compare", "-f", format, "-F", format, $"ours.{format}", $"theirs.{format}");
        Assert.True(same.ExitCode == 0, same.ToString());
        if (format == "qed") Tool.Ok(dir.QemuImg("check", $"ours.{format}"));
    }

    [Fact]
    public void ReadsAnImageAndLeavesItAlone()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "img.qed", "8M"));
        Tool.Ok(dir.QemuIo("-f", "qed", "-c", "write -P 9 0 1M", "img.qed"));
        string before = dir.Hash("img.qed");
        var ours = Tool.Ok(dir.Qed("bench", "-c", "2000", "-d", "16", "-s", "4k", "-S", "12k", "img.qed"));
        Assert.Equal(Announcement(Tool.Ok(dir.QemuImg("bench", "-c", "2000", "-d", "16", "-s", "4k", "-S", "12k", "img.qed")).StdOut),
            Announcement(ours.StdOut));
        Assert.Equal(before, dir.Hash("img.qed"));
    }

    [Theory]
    [InlineData(new[] { "-d", "4", "--flush-interval", "3" }, "Flush interval can't be smaller than depth")]
    [InlineData(new[] { "-d", "0" }, "queue depth")] // qemu-img hangs here; qed refuses
    [InlineData(new[] { "-c", "-5" }, "request count")]
    public void RefusesBadFlagsInOneLineAndChangesNothing(string[] flags, string message)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "img.qed", "8M"));
        string before = dir.Hash("img.qed");
        var ours = dir.Qed(["bench", "-w", .. flags, "img.qed"]);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.Single(ours.StdErr.Trim().Split('\n'));
        Assert.Contains(message, ours.StdErr);
        Assert.Equal(before, dir.Hash("img.qed"));
    }

    /// <summary>Everything before the timing line.</summary>
    private static string Announcement(string stdout) => stdout[..stdout.IndexOf("Run completed", StringComparison.Ordinal)];
}
