using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Amend;

/// <summary><c>qed amend</c> changes the backing format and name of a QED image in place and refuses anything else.</summary>
public class AmendInteropTests
{
    [Theory]
    [InlineData("qemu-img")]
    [InlineData("qed")]
    public void BackingFormatAndNameChangeInPlace(string maker)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "base.raw"));
        string[] create = ["create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed"];
        Tool.Ok(maker == "qed" ? dir.Qed(create) : dir.QemuImg(create));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 4k", "img.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "want.raw"));

        Tool.Ok(dir.Qed("amend", "-o", "backing_fmt=qcow2", "img.qed")); // probed from now on: no NO_PROBE
        Assert.DoesNotContain("backing file format", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        Tool.Ok(dir.Qed("amend", "-o", "backing_fmt=raw", "img.qed"));
        Assert.Contains("backing file format: raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        File.Copy(dir["base.raw"], dir["other.raw"]);
        Tool.Ok(dir.Qed("amend", "-o", "backing_file=other.raw,backing_fmt=raw", "img.qed"));
        Assert.Contains("backing file: other.raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qed", "want.raw"));
    }

    [Fact]
    public void OtherOptionsAreRefusedWithoutChange()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "1M"));
        string hash = dir.Hash("img.qed");
        var result = dir.Qed("amend", "-o", "cluster_size=4k", "img.qed");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cluster_size", result.StdErr);
        var noBacking = dir.Qed("amend", "-o", "backing_fmt=raw", "img.qed");
        Assert.Equal(1, noBacking.ExitCode);
        Assert.Contains("no backing file", noBacking.StdErr);
        Assert.Equal(hash, dir.Hash("img.qed"));
    }
}
