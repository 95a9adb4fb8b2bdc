using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Io;

/// <summary>
/// <c>qed io</c> as a stand-in for qemu-io: the same commands on two copies of one image print the same lines (timing
/// lines aside) on the same streams, exit with the same code and leave images qemu-img compares equal.
/// </summary>
public class IoCommandsInteropTests
{
    public static TheoryData<string, string[]> Sessions => new()
    {
        { "read and write flags", ["write -P 0x41 0 20", "read -v 0 20", "read -P 0x41 -s 4 -l 8 0 20", "write -q 0 1", "read -q -P 0xcd 0 1", "r -P 0x41 1 19", "write -pP 7 64k 4k", "read -pP 7 64k 4k"] },
        { "vectors", ["writev -P 3 0 512 1k", "readv -P 3 0 512 1k", "readv -v 0 3 2", "writev 4k 1 2 3"] },
        { "zero writes", ["write -P 9 0 128k", "write -z 4k 4k", "write -z -u 64k 64k", "read -P 0 4k 4k", "read -P 9 0 4k", "read -P 0 64k 64k"] },
        { "operand errors", ["read 0", "read -x 0 1", "read 0 1x", "read -P 0 -l 1000 0 512", "read -s 5 0 1", "read -P x 0 1", "read -P 300 0 1", "read 0 2G", "alloc 1 2 3"] },
        { "write errors", ["write -z -P 1 0 1", "write -u 0 1", "write 2M 512", "write -c 0 64k", "bogus", "read 1M+1 1"] },
        { "queries", ["write 0 512", "alloc 0 128k", "alloc 0", "alloc 512 1", "map", "info", "length", "l", "i"] },
        { "truncate", ["truncate 2M", "length", "truncate 1M", "truncate -m full 3M", "length"] },
        { "aio", ["aio_write -P 5 0 4k", "aio_write -P 6 8k 4k", "aio_flush", "aio_read -P 5 0 4k", "aio_flush", "read -P 6 8k 4k"] },
        { "close and open", ["close", "length", "open a.qed"] },
        // (Plain "help" lists blkdebug's break/resume/wait_break and reopen too, which qed io lacks; "help read" prints
        // qemu-io's extended text, which qed io does not copy.)
        { "help", ["help length", "help nosuch"] },
        { "quit stops", ["length", "quit", "length"] },
    };

    /// <summary>An option qemu-io does not know is named in its words (getopt's for a short one), with exit 1.</summary>
    [Theory]
    [InlineData("-Z")]
    [InlineData("--foo")]
    [InlineData("-Zq")]
    public void UnknownOptionIsNamedAsQemuIoNamesIt(string option)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "a.qed", "1M"));
        var theirs = dir.QemuIo(option, "a.qed");
        var ours = dir.Qed("io", option, "a.qed");
        // getopt names the program as invoked (/usr/bin/qemu-io): compare what follows the name.
        static string Message(string stderr) => stderr.Split('\n')[0][(stderr.IndexOf(": ", StringComparison.Ordinal) + 2)..];
        Assert.Equal(Message(theirs.StdErr), Message(ours.StdErr));
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
    }

    [Theory]
    [MemberData(nameof(Sessions))]
    public void SameCommandsPrintTheSameAsQemuIo(string name, string[] commands)
    {
        // Two aio requests in flight may complete in either order, in qemu-io as here: compare those lines as a set.
        Func<string, string> normal = name == "aio" ? text => string.Join('\n', WithoutTimings(text).Split('\n').Order(StringComparer.Ordinal)) : WithoutTimings;
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "theirs.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "ours.qed", "1M"));
        string[] args = ["--cache", "writeback", "--aio", "threads", "-f", "qed", .. commands.SelectMany(c => new[] { "-c", c.Replace("a.qed", "theirs.qed", StringComparison.Ordinal) })];
        var theirs = dir.QemuIo([.. args, "theirs.qed"]);
        var ours = dir.Qed(["io", .. args.Select(a => a.Replace("theirs.qed", "ours.qed", StringComparison.Ordinal)), "ours.qed"]);
        Assert.Equal(normal(theirs.StdOut), normal(ours.StdOut.Replace("ours.qed", "theirs.qed", StringComparison.Ordinal)));
        Assert.Equal(theirs.StdErr, ours.StdErr.Replace("ours.qed", "theirs.qed", StringComparison.Ordinal));
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Tool.Ok(dir.QemuImg("compare", "-q", "-f", "qed", "-F", "qed", "theirs.qed", "ours.qed"));
    }

    [Fact]
    public void CommandsFromStandardInputPromptAndExitZeroAsQemuIo()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "a.qed", "1M"));
        const string script = "printf 'write -P 1 0 512\\nread -P 2 0 512\\nbogus\\n\\nlength\\n' | \"$0\" $1 -f qed a.qed";
        var theirs = Tool.Run("/bin/sh", dir.Path, "-c", script, Tool.Require("qemu-io", "qemu-utils"));
        var ours = Tool.Run("/bin/sh", dir.Path, "-c", script, Tool.QedPath, "io");
        Assert.Contains("qemu-io> ", ours.StdOut);
        Assert.Equal(WithoutTimings(theirs.StdOut), WithoutTimings(ours.StdOut));
        Assert.Equal(theirs.StdErr, ours.StdErr);
        Assert.Equal(0, ours.ExitCode);
    }

    [Fact]
    public void SnapshotModeLeavesTheImageUnchanged()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "a.qed", "1M"));
        string before = dir.Hash("a.qed");
        var ours = Tool.Ok(dir.Qed("io", "-s", "-f", "qed", "-c", "write -P 7 0 64k", "-c", "read -P 7 0 64k", "a.qed"));
        Assert.DoesNotContain("Pattern verification failed", ours.StdOut);
        Assert.Equal(before, dir.Hash("a.qed"));
        Tool.Ok(dir.Qed("io", "-f", "qed", "-c", "read -P 0 0 64k", "a.qed"));
    }

    [Fact]
    public void ImageOptsNameTheFileAndFormat()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "a.qed", "1M"));
        var ours = Tool.Ok(dir.Qed("io", "--image-opts", "-c", "write -P 3 0 4k", "driver=qed,file.filename=a.qed"));
        Assert.Contains("wrote 4096/4096 bytes at offset 0", ours.StdOut);
        Tool.Ok(dir.QemuIo("-f", "qed", "-c", "read -P 3 0 4k", "a.qed"));
    }

    /// <summary>An option string that cannot be opened is reported as qemu-io reports it ("can't open: REASON").</summary>
    [Theory]
    [InlineData("driver=qed,file.filename=nope.qed")]
    [InlineData("driver=qed")]
    [InlineData("driver=qed,file.filename=a.qed,foo=1")]
    public void ImageOptsThatCannotBeOpenedAreReportedAsQemuIoReportsThem(string options)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "a.qed", "1M"));
        var theirs = dir.QemuIo("--image-opts", "-c", "read 0 1", options);
        var ours = dir.Qed("io", "--image-opts", "-c", "read 0 1", options);
        Assert.Equal(theirs.StdErr, ours.StdErr); // qed io names itself qemu-io, as scripts and the iotests expect
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
    }

    private static string WithoutTimings(string output) =>
        string.Join('\n', output.Split('\n').Where(line => !line.Contains(" ops; ")));
}
