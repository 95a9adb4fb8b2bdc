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

    [Theory]
    [InlineData("-s", "2G", "buffer size")]
    [InlineData("-s", "2147483648", "buffer size")]
    [InlineData("-s", "8E", "buffer size")]
    [InlineData("-s", "abc", "buffer size")]
    [InlineData("-s", "99999999999999999999T", "buffer size")]
    [InlineData("-S", "8E", "step_size")]
    [InlineData("-S", "2.5", "step_size")]
    [InlineData("-o", "8E", "offset")]
    [InlineData("-o", "1x", "offset")]
    public void BadSizesAreRefusedInQemuImgsWordsNamingTheValue(string flag, string value, string what)
    {
        // qemu-img: "Invalid buffer size specified. Must be between 0 and 2147483647." (or "You may use k, M, G, T,
        // P or E suffixes for" / "kilobytes, ..." on two lines); qed says the same on one line, with the value.
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "img.raw", "8M"));
        var ours = dir.Qed("bench", "-f", "raw", "-c", "1", flag, value, "img.raw");
        var theirs = dir.QemuImg("bench", "-f", "raw", "-c", "1", flag, value, "img.raw");
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        string line = Assert.Single(ours.StdErr.Trim().Split('\n'));
        string[] qemuWords = theirs.StdErr.Trim().Split('\n').Select(l => l.Replace("qemu-img: ", "")).ToArray();
        Assert.StartsWith($"qed: Invalid {what} specified: '{value}'", line);
        Assert.EndsWith(string.Join(" ", qemuWords)[$"Invalid {what} specified.".Length..], line);
    }

    [Fact]
    public void HugeRequestsDeepInFlightRunInBoundedMemory()
    {
        // 64 requests of 1 GiB would want 64 GiB of buffers (qemu-img fails "Failed request: Bad address"; qed
        // used to die of OutOfMemoryException): past 256 MiB in all, the requests share one buffer.
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "img.raw", "2G"));
        var ours = Tool.Ok(dir.Qed("bench", "-f", "raw", "-c", "2", "-s", "1G", "-d", "64", "img.raw"));
        Assert.StartsWith("Sending 2 read requests, 1073741824 bytes each, 64 in parallel", ours.StdOut);
        Assert.Contains("Run completed in", ours.StdOut);
    }

    /// <summary>Everything before the timing line.</summary>
    private static string Announcement(string stdout) => stdout[..stdout.IndexOf("Run completed", StringComparison.Ordinal)];
}
