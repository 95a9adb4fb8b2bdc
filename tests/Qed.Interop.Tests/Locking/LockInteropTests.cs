using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Locking;

/// <summary>
/// qed and QEMU's tools exclude each other through QEMU's image locks, in both directions: a writer is refused beside
/// any opener, a reader beside a writer, with qemu-img's words and exit codes; -U read-only opens work beside a
/// writer. The holders run in the background (qemu-io sleeping, qemu-nbd, qed serve) and are killed at the end.
/// </summary>
public class LockInteropTests
{
    private static TempDir NewDir()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "a.qed", "8M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x5a 0 1M", "a.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "b.qed", "8M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "a.qed", "-F", "qed", "o.qed"));
        return dir;
    }

    /// <summary>qed says what qemu-img says (with its own name in front) and exits as it does.</summary>
    private static void SameRefusal(ToolResult qemu, ToolResult qed)
    {
        Assert.NotEqual(0, qemu.ExitCode);
        Assert.True(qemu.ExitCode == qed.ExitCode, $"{qemu}\n{qed}");
        Assert.Equal(qemu.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), qed.StdErr);
    }

    /// <summary>qed io says what qemu-io says in the same state (both print "qemu-io: can't open device ...").</summary>
    private static void SameIoRefusal(ToolResult qemuIo, ToolResult qedIo)
    {
        Assert.NotEqual(0, qemuIo.ExitCode);
        Assert.True(qemuIo.ExitCode == qedIo.ExitCode, $"{qemuIo}\n{qedIo}");
        Assert.Equal(qemuIo.StdErr, qedIo.StdErr);
    }

    public static TheoryData<string> QemuWriters => new() { "qemu-io", "qemu-nbd" };

    [Theory]
    [MemberData(nameof(QemuWriters))]
    public void QedIsRefusedBesideAQemuWriterWithQemuImgsWords(string holderTool)
    {
        using var dir = NewDir();
        string before = dir.Hash("a.qed");
        using (holderTool == "qemu-io" ? LockHolder.QemuIo(dir, "a.qed") : LockHolder.QemuNbd(dir, "a.qed"))
        {
            string[][] commands =
            [
                ["info", "a.qed"],
                ["info", "--backing-chain", "o.qed"],
                ["check", "a.qed"],
                ["check", "-r", "all", "a.qed"],
                ["map", "a.qed"],
                ["map", "o.qed"],
                ["compare", "a.qed", "b.qed"],
                ["convert", "-O", "raw", "a.qed", "x.raw"],
                ["convert", "-O", "qed", "b.qed", "a.qed"],
                ["convert", "-n", "-O", "qed", "b.qed", "a.qed"],
                ["create", "-f", "qed", "a.qed", "1M"],
                ["resize", "a.qed", "16M"],
                ["bench", "-c", "1", "a.qed"],
                ["bench", "-w", "-c", "1", "a.qed"],
            ];
            foreach (string[] command in commands)
                SameRefusal(dir.QemuImg(command), dir.Qed(command));
            // qed io against qemu-io's own open: qemu-io's words.
            string[] write = ["-c", "write -P 1 0 4k", "a.qed"], read = ["-r", "-c", "read 0 4k", "a.qed"];
            SameIoRefusal(dir.QemuIo(write), dir.Qed(["io", .. write]));
            SameIoRefusal(dir.QemuIo(read), dir.Qed(["io", .. read]));
            Assert.Contains("Failed to get shared \"write\" lock", dir.Qed(["io", .. read]).StdErr);
            Assert.False(File.Exists(dir["x.raw"]));
        }
        Assert.Equal(before, dir.Hash("a.qed"));
    }

    [Fact]
    public void ForceShareReadsBesideAQemuWriter()
    {
        using var dir = NewDir();
        using var holder = LockHolder.QemuIo(dir, "a.qed");
        Tool.Ok(dir.Qed("info", "-U", "a.qed"));
        Tool.Ok(dir.Qed("info", "-U", "--backing-chain", "o.qed"));
        Tool.Ok(dir.Qed("check", "-U", "a.qed"));
        Tool.Ok(dir.Qed("map", "-U", "o.qed"));
        Tool.Ok(dir.Qed("measure", "-U", "-O", "qed", "a.qed"));
        Tool.Ok(dir.Qed("compare", "-U", "a.qed", "o.qed"));
        Tool.Ok(dir.Qed("convert", "-U", "-O", "raw", "o.qed", "x.raw"));
        Tool.Ok(dir.Qed("bench", "-U", "-c", "1", "a.qed"));
        Assert.Contains("read 4096/4096", Tool.Ok(dir.Qed("io", "-U", "-r", "-c", "read -P 0x5a 0 4k", "a.qed")).StdOut);
    }

    [Fact]
    public void ForceShareWithAWritableOpenIsRefusedAsQemuImgDoes()
    {
        using var dir = NewDir();
        string before = dir.Hash("a.qed");
        SameRefusal(dir.QemuImg("check", "-U", "-r", "all", "a.qed"), dir.Qed("check", "-U", "-r", "all", "a.qed"));
        SameRefusal(dir.QemuImg("bench", "-U", "-w", "-c", "1", "a.qed"), dir.Qed("bench", "-U", "-w", "-c", "1", "a.qed"));
        string[] io = ["-U", "-c", "write 0 4k", "a.qed"];
        SameIoRefusal(dir.QemuIo(io), dir.Qed(["io", .. io]));
        Assert.Equal("qemu-io: can't open device a.qed: force-share=on can only be used with read-only images\n", dir.Qed(["io", .. io]).StdErr);
        Assert.Equal(before, dir.Hash("a.qed"));
    }

    [Fact]
    public void QemuToolsAreRefusedBesideQedServe()
    {
        using var dir = NewDir();
        using var serve = LockHolder.QedServe(dir, "a.qed");
        var io = dir.QemuIo("-c", "write -P 1 0 4k", "a.qed");
        Assert.Equal(1, io.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", io.StdErr);
        var ro = dir.QemuIo("-r", "-c", "read 0 4k", "a.qed");
        Assert.Equal(1, ro.ExitCode);
        Assert.Contains("Failed to get shared \"write\" lock", ro.StdErr);
        var info = dir.QemuImg("info", "a.qed");
        Assert.Equal("qemu-img: Could not open 'a.qed': Failed to get shared \"write\" lock\nIs another process using the image [a.qed]?\n", info.StdErr);
        Assert.Equal(1, dir.QemuImg("convert", "-O", "raw", "o.qed", "x.raw").ExitCode);
        Assert.Equal(1, dir.QemuImg("resize", "a.qed", "16M").ExitCode);
        var nbd = Tool.Run(Tool.Require("qemu-nbd", "qemu-utils"), dir.Path, "-k", dir["nbd.sock"], "-f", "qed", "a.qed");
        Assert.Equal(1, nbd.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", nbd.StdErr);
        // -U read-only opens still work beside qed's writer.
        Assert.Contains("read 4096/4096", Tool.Ok(dir.QemuIo("-U", "-r", "-c", "read -P 0x5a 0 4k", "a.qed")).StdOut);
        Tool.Ok(dir.QemuImg("info", "-U", "a.qed"));
    }

    [Fact]
    public void QemuWritersAreRefusedBesideAReadOnlyQedServeAndReadersAreNot()
    {
        using var dir = NewDir();
        using var serve = LockHolder.QedServe(dir, "a.qed", "-r");
        var io = dir.QemuIo("-c", "write -P 1 0 4k", "a.qed");
        Assert.Equal(1, io.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", io.StdErr);
        Tool.Ok(dir.QemuIo("-r", "-c", "read -P 0x5a 0 4k", "a.qed"));
        Tool.Ok(dir.QemuImg("check", "a.qed"));
        Tool.Ok(dir.Qed("map", "a.qed"));
        Assert.Equal(1, dir.Qed("io", "-c", "write 0 4k", "a.qed").ExitCode);
    }

    [Fact]
    public void QemuWritersAreRefusedBesideAQedReaderOfTheirBackingFile()
    {
        using var dir = NewDir();
        using var serve = LockHolder.QedServe(dir, "o.qed");
        var io = dir.QemuIo("-c", "write -P 1 0 4k", "a.qed"); // the base of the served overlay
        Assert.Equal(1, io.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", io.StdErr);
        Tool.Ok(dir.QemuIo("-r", "-c", "read -P 0x5a 0 4k", "a.qed"));
    }

    [Fact]
    public void ASecondQedWriterIsRefusedAndTheFirstKeepsItsData()
    {
        using var dir = NewDir();
        using (LockHolder.QedServe(dir, "a.qed"))
        {
            var second = dir.Qed("io", "-c", "write -P 0x11 0 1M", "a.qed");
            Assert.Equal(1, second.ExitCode);
            Assert.Equal("qemu-io: can't open device a.qed: Failed to get \"write\" lock\nIs another process using the image [a.qed]?\n", second.StdErr);
            // The issue's case: shrinking a served image succeeded and its data then read as zeroes.
            var shrink = dir.Qed("resize", "--shrink", "a.qed", "1M");
            Assert.Equal(1, shrink.ExitCode);
            Assert.Contains("Is another process using the image [a.qed]?", shrink.StdErr);
        }
        Assert.Contains("read 1048576/1048576", Tool.Ok(dir.QemuIo("-c", "read -P 0x5a 0 1M", "a.qed")).StdOut);
        Assert.Contains("8 MiB", Tool.Ok(dir.QemuImg("info", "a.qed")).StdOut);
    }

    [Fact]
    public void LocksAreReleasedWhenQedExits()
    {
        using var dir = NewDir();
        using (LockHolder.QedServe(dir, "a.qed")) { }
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 4k", "a.qed"));
        Tool.Ok(dir.Qed("io", "-c", "write -P 2 0 4k", "a.qed"));
        Assert.DoesNotContain($":{LockHolder.Inode(dir["a.qed"])} ", File.ReadAllText("/proc/locks"), StringComparison.Ordinal);
    }
}
