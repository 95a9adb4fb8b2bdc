using System.Text;
using Qed.Interop.Tests.Support;
using Qed.Operations;

namespace Qed.Interop.Tests.Rebase;

/// <summary>
/// <c>qed rebase</c>: safe mode keeps the content while the backing file changes; -u rewrites only the header, with no
/// stale bytes of an older name; names that do not fit and unknown compat bits are refused without changing a byte.
/// </summary>
public class RebaseInteropTests
{
    [Theory]
    [InlineData("qemu-img", "raw")]
    [InlineData("qed", "raw")]
    [InlineData("qemu-img", "qed")]
    [InlineData("qemu-img", "")]
    public void SafeRebaseKeepsTheContent(string maker, string newBase)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "old.raw", "4M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 2M", "-c", "write -P 0x56 3M 100k", "old.raw"));
        string[] create = ["create", "-f", "qed", "-b", "old.raw", "-F", "raw", "img.qed"];
        Tool.Ok(maker == "qed" ? dir.Qed(create) : dir.QemuImg(create));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 64k 64k", "-c", "write -z 3M 64k", "img.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "want.raw"));
        string[] args;
        if (newBase == "raw")
        {
            Tool.Ok(dir.QemuImg("create", "-f", "raw", "new.raw", "4M"));
            Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "-c", "write -P 0x77 1M 2M", "new.raw"));
            args = ["rebase", "-b", "new.raw", "-F", "raw", "img.qed"];
        }
        else if (newBase == "qed")
        {
            Tool.Ok(dir.QemuImg("create", "-f", "qed", "new.qed", "2M"));
            Tool.Ok(dir.QemuIo("-c", "write -P 0x55 0 512k", "new.qed"));
            args = ["rebase", "-b", "new.qed", "-F", "qed", "img.qed"];
        }
        else
        {
            args = ["rebase", "-b", "", "img.qed"];
        }
        Tool.Ok(dir.Qed(args));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "want.raw"));
        string info = Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut;
        if (newBase == "") Assert.DoesNotContain("backing file", info);
        else Assert.Contains($"backing file: new.{newBase}", info);
        Assert.Equal(newBase == "raw", info.Contains("backing file format: raw"));
    }

    [Fact]
    public void SafeRebaseOntoABaseHidesItWithZeroClusters()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "2M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "3M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 1M 64k", "img.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "want.raw"));
        Tool.Ok(dir.Qed("rebase", "-b", "base.raw", "-F", "raw", "img.qed"));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qed", "want.raw"));
        // The first MiB (0x55 in the base, zeroes in the image) is zero clusters: no new data clusters.
        string map = Tool.Ok(dir.QemuImg("map", "--output=json", "img.qed")).StdOut;
        Assert.Contains("{ \"start\": 0, \"length\": 1048576, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false}", map);
    }

    [Fact]
    public async Task UnsafeRebaseLeavesNoStaleBytesOfALongerName()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "a-rather-long-backing-file-name.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "b.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "a-rather-long-backing-file-name.raw", "-F", "raw", "img.qed"));
        Tool.Ok(dir.Qed("rebase", "-u", "-b", "b.raw", "-F", "raw", "img.qed"));
        byte[] bytes = dir.Bytes("img.qed");
        Assert.Equal("b.raw", Encoding.ASCII.GetString(bytes, 64, 5));
        Assert.True(bytes.AsSpan(69, 4096 - 69).IndexOfAnyExcept((byte)0) < 0, "the old name's bytes are gone");
        Assert.Contains("backing file format: raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        QemuCheck.AssertClean(dir, "img.qed");

        // Probed format (the library's null; the CLI requires -F, as qemu-img): NO_PROBE is cleared.
        await ImageFile.RebaseAsync(dir["img.qed"], "b.raw", new RebaseOptions { Unsafe = true });
        Assert.Equal(1UL, BitConverter.ToUInt64(dir.Bytes("img.qed"), 16));
    }

    [Fact]
    public void ANameThatDoesNotFitOrUnknownCompatBitsChangeNothing()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "b.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "b.raw", "-F", "raw", "img.qed"));
        string hash = dir.Hash("img.qed");
        var tooLong = dir.Qed("rebase", "-u", "-b", new string('x', 70000), "-F", "raw", "img.qed");
        Assert.Equal(1, tooLong.ExitCode);
        Assert.Contains("room for", tooLong.StdErr);
        Assert.Single(tooLong.StdErr.Trim().Split('\n'));
        Assert.Equal(hash, dir.Hash("img.qed"));

        HeaderEditor.SetU64(dir["img.qed"], 24, 0x100); // an unknown compat bit
        hash = dir.Hash("img.qed");
        var compat = dir.Qed("rebase", "-u", "-b", "", "img.qed");
        Assert.Equal(1, compat.ExitCode);
        Assert.Contains("compat", compat.StdErr);
        Assert.Equal(hash, dir.Hash("img.qed"));
    }

    [Theory]
    [InlineData("-u")]
    [InlineData("")]
    public void ANewBackingFileWithoutItsFormatIsRefusedAsByQemuImg(string mode)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "b.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "1M"));
        string hash = dir.Hash("img.qed");
        string[] args = mode == "" ? ["rebase", "-b", "b.qed", "img.qed"] : ["rebase", mode, "-b", "b.qed", "img.qed"];
        var ours = dir.Qed(args);
        var theirs = dir.QemuImg(args);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(theirs.StdErr.Replace("qemu-img:", "qed:"), ours.StdErr);
        Assert.Equal(hash, dir.Hash("img.qed"));

        // A missing image is reported first, as there.
        string[] missing = ["rebase", "-u", "-b", "b.qed", "nope.qed"];
        Assert.Contains("Could not open 'nope.qed'", dir.Qed(missing).StdErr);
        Assert.Contains("Could not open 'nope.qed'", dir.QemuImg(missing).StdErr);

        // Removing the backing file needs no format, and -U is accepted.
        Tool.Ok(dir.QemuImg("rebase", "-u", "-U", "-b", "", "img.qed"));
        Tool.Ok(dir.Qed("rebase", "-u", "-U", "-b", "", "img.qed"));
        Tool.Ok(dir.Qed("rebase", "-U", "-b", "b.qed", "-F", "qed", "img.qed"));
    }

    /// <summary>
    /// Onto a chain holding the image itself: without -U the new chain's reader locks meet the image's own writer lock,
    /// and qed says what qemu-img says. With -U qemu-img 7.2 makes the loop (low.qed then cannot be opened at all);
    /// qed refuses it, changing nothing (a deliberate difference: the loop is a broken image).
    /// </summary>
    [Fact]
    public void ABackingChainLoopIsRefusedWithoutChange()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "low.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "low.qed", "-F", "qed", "high.qed"));
        string hash = dir.Hash("low.qed");
        foreach (string target in new[] { "high.qed", "low.qed" })
        {
            string[] args = ["rebase", "-b", target, "-F", "qed", "low.qed"];
            var theirs = dir.QemuImg(args);
            Assert.Equal(hash, dir.Hash("low.qed"));
            var ours = dir.Qed(args);
            Assert.Equal(1, ours.ExitCode);
            Assert.Equal(theirs.ExitCode, ours.ExitCode);
            Assert.Equal(theirs.StdErr.Replace("qemu-img: ", "qed: "), ours.StdErr);
            Assert.Contains("Is another process using the image [low.qed]?", ours.StdErr);

            var shared = dir.Qed("rebase", "-U", "-b", target, "-F", "qed", "low.qed");
            Assert.Equal(1, shared.ExitCode);
            Assert.Contains("its own backing chain", shared.StdErr);
        }
        Assert.Equal(hash, dir.Hash("low.qed"));
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("0.10")]
    public async Task Qcow2OverlaysRebaseSafelyAndUnsafely(string compat)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "old.raw", "4M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 2M", "old.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "new-and-longer-name.raw", "4M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "-c", "write -P 0x66 1M 3M", "new-and-longer-name.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "-o", $"compat={compat}", "-b", "old.raw", "-F", "raw", "img.qcow2"));
        Tool.Ok(dir.QemuIo("-f", "qcow2", "-c", "write -P 1 3M 64k", "-c", "write -P 2 100k 8k", "img.qcow2"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qcow2", "want.raw"));

        Tool.Ok(dir.Qed("rebase", "-b", "new-and-longer-name.raw", "-F", "raw", "img.qcow2"));
        Tool.Ok(dir.QemuImg("check", "img.qcow2"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qcow2", "want.raw"));
        string info = Tool.Ok(dir.QemuImg("info", "img.qcow2")).StdOut;
        Assert.Contains("backing file: new-and-longer-name.raw", info);
        Assert.Contains("backing file format: raw", info);

        // Back to the shorter name, header only: no byte of the longer name is left behind it.
        await ImageFile.RebaseAsync(dir["img.qcow2"], "old.raw", new RebaseOptions { Unsafe = true }); // no format stored
        Tool.Ok(dir.QemuImg("check", "img.qcow2"));
        Assert.DoesNotContain("backing file format", Tool.Ok(dir.QemuImg("info", "img.qcow2")).StdOut);
        byte[] bytes = dir.Bytes("img.qcow2");
        long nameAt = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(8));
        Assert.Equal("old.raw", Encoding.ASCII.GetString(bytes, (int)nameAt, 7));
        Assert.True(bytes.AsSpan((int)nameAt + 7, 512).IndexOfAnyExcept((byte)0) < 0, "no stale name bytes");
    }
}
