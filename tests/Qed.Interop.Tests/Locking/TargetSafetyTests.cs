using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Locking;

/// <summary>
/// create and convert never destroy what they did not make: a pre-existing device node, FIFO or directory at the
/// target is refused and left in place, a file of the source chain (by a hard link or symlink) is never the target,
/// and a FIFO or directory is refused as an image or backing file instead of hanging.
/// </summary>
public class TargetSafetyTests
{
    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>A character device (/dev/full's numbers) as root, else a FIFO: a name that is not a regular file.</summary>
    private static void MakeNode(TempDir dir, string name)
    {
        var made = IsRoot
            ? Tool.Run("/usr/bin/mknod", dir.Path, "-m", "666", name, "c", "1", "7")
            : Tool.Run("/usr/bin/mkfifo", dir.Path, name);
        Assert.True(made.ExitCode == 0, made.ToString());
    }

    private static string Type(TempDir dir, string name) => Tool.Ok(Tool.Run("/usr/bin/stat", dir.Path, "-c", "%F", name)).StdOut.Trim();

    [Theory]
    [InlineData("qed")]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public void CreateAndConvertLeaveAPreexistingNodeInPlace(string format)
    {
        using var dir = new TempDir();
        MakeNode(dir, "node");
        Tool.Run("/usr/bin/mkfifo", dir.Path, "fifo");
        Directory.CreateDirectory(dir["folder"]);
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "src.qed", "1M"));
        foreach (string target in new[] { "node", "fifo", "folder" })
        {
            string type = Type(dir, target);
            var create = dir.Qed("create", "-f", format, target, "1M");
            Assert.Equal(1, create.ExitCode);
            Assert.Single(create.StdErr.Trim().Split('\n'));
            Assert.Contains($"'{target}'", create.StdErr);
            Assert.Equal(type, Type(dir, target));
            var convert = dir.Qed("convert", "-O", format, "src.qed", target);
            Assert.Equal(1, convert.ExitCode);
            Assert.Equal(type, Type(dir, target));
        }
    }

    [Fact]
    public void AFailedCreateOverAFileInUseLeavesItWhole()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "a.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 0 64k", "a.qed"));
        string before = dir.Hash("a.qed");
        using (LockHolder.QemuIo(dir, "a.qed", "-r"))
        {
            var create = dir.Qed("create", "-f", "qed", "a.qed", "2M");
            Assert.Equal(1, create.ExitCode);
            Assert.Equal("qed: a.qed: Failed to get \"write\" lock\nIs another process using the image [a.qed]?\n", create.StdErr);
        }
        Assert.Equal(before, dir.Hash("a.qed"));
    }

    [Theory]
    [InlineData("hard")]
    [InlineData("symbolic")]
    [InlineData("hard-base")]
    public void ConvertOntoAnotherNameOfASourceFileIsRefused(string link)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x44 0 64k", "base.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "a.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x55 64k 64k", "a.qed"));
        string target = link == "hard-base" ? "base.qed" : "a.qed";
        if (link == "symbolic") File.CreateSymbolicLink(dir["hl.qed"], target);
        else Tool.Ok(Tool.Run("/usr/bin/ln", dir.Path, target, "hl.qed"));
        string a = dir.Hash("a.qed"), b = dir.Hash("base.qed");

        // Without -U qemu-img's own lock refuses it; qed says the same words.
        var qemu = dir.QemuImg("convert", "-O", "qed", "a.qed", "hl.qed");
        var qed = dir.Qed("convert", "-O", "qed", "a.qed", "hl.qed");
        Assert.Equal(1, qed.ExitCode);
        Assert.Equal(qemu.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), qed.StdErr);
        var qedN = dir.Qed("convert", "-n", "-O", "qed", "a.qed", "hl.qed");
        Assert.Equal(1, qedN.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", qedN.StdErr);
        // With -U qemu-img would destroy the source; qed still refuses, by device and inode.
        foreach (string[] extra in new[] { new[] { "-U" }, ["-U", "-n"] })
        {
            var shared = dir.Qed(["convert", .. extra, "-O", "qed", "a.qed", "hl.qed"]);
            Assert.Equal(1, shared.ExitCode);
            Assert.Equal($"qed: Could not write 'hl.qed': it is part of the source image chain ('{(target == "a.qed" ? "a.qed" : "base.qed")}')\n", shared.StdErr);
        }
        Assert.Equal(a, dir.Hash("a.qed"));
        Assert.Equal(b, dir.Hash("base.qed"));
        Assert.True(File.Exists(dir["hl.qed"]));
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("folder")]
    public void AFifoOrDirectoryAsBackingFileIsRefusedNotWaitedOn(string backing)
    {
        using var dir = new TempDir();
        Tool.Run("/usr/bin/mkfifo", dir.Path, "fifo");
        Directory.CreateDirectory(dir["folder"]);
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-u", "-b", backing, "-F", "raw", "ov.qed", "1M"));
        string expected = $"qed: Could not open 'ov.qed': Could not open backing file: 'file' driver requires '{backing}' to be a regular file\n";
        foreach (string[] command in new[]
                 {
                     new[] { "map", "ov.qed" }, ["convert", "-O", "raw", "ov.qed", "x.raw"], ["info", "--backing-chain", "ov.qed"],
                     ["compare", "ov.qed", "ov.qed"],
                 })
        {
            var result = dir.Qed(command); // Tool.Run fails the test after its timeout if this hangs
            Assert.NotEqual(0, result.ExitCode);
            Assert.Equal(expected, result.StdErr);
        }
        // qed io in qemu-io's words (qemu-io itself waits forever on the FIFO, so its text is taken from the folder case).
        var io = dir.Qed("io", "-c", "read 0 512", "ov.qed");
        Assert.Equal(1, io.ExitCode);
        Assert.Equal($"qemu-io: can't open device ov.qed: Could not open backing file: 'file' driver requires '{backing}' to be a regular file\n", io.StdErr);
        if (backing == "folder") Assert.Equal(dir.QemuIo("-c", "read 0 512", "ov.qed").StdErr, io.StdErr);
        Assert.False(File.Exists(dir["x.raw"]));
        // The image itself: qemu-img's words for a directory (it hangs on a FIFO).
        Assert.Equal("qed: Could not open 'fifo': 'file' driver requires 'fifo' to be a regular file\n", dir.Qed("info", "fifo").StdErr);
        var qemu = dir.QemuImg("info", "folder");
        Assert.Equal(qemu.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), dir.Qed("info", "folder").StdErr);
        Assert.Equal(1, dir.Qed("check", "fifo").ExitCode);
        Assert.Equal(1, dir.Qed("io", "-f", "raw", "-c", "read 0 1", "fifo").ExitCode);
    }
}
