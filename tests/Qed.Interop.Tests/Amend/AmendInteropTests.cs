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

        Tool.Ok(dir.QemuImg("convert", "-O", "qed", "base.raw", "base-copy.qed"));
        Tool.Ok(dir.Qed("amend", "-o", "backing_file=base-copy.qed", "img.qed")); // probed from now on: no NO_PROBE
        Assert.DoesNotContain("backing file format", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        Tool.Ok(dir.Qed("amend", "-o", "backing_file=base.raw,backing_fmt=raw", "img.qed"));
        Assert.Contains("backing file format: raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        File.Copy(dir["base.raw"], dir["other.raw"]);
        Tool.Ok(dir.Qed("amend", "-o", "backing_file=other.raw,backing_fmt=raw", "img.qed"));
        Assert.Contains("backing file: other.raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qed", "want.raw"));
    }

    [Theory]
    [InlineData("backing_fmt=raw")]                     // a QED file read as raw: its header and tables
    [InlineData("backing_fmt=qcow2")]                   // not what the file is
    [InlineData("backing_file=base.raw,backing_fmt=qed")]
    [InlineData("backing_file=missing.qed")]
    public void ABackingFormatThatIsNotTheBackingFilesIsRefusedWithoutChange(string change)
    {
        // qemu-img refuses to amend a backing file at all ("Cannot amend the backing file"); qed changes it in place
        // only where the image goes on reading its backing file as the format it is.
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x55 0 1M", "base.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "img.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "want.raw"));
        string hash = dir.Hash("img.qed");

        var result = dir.Qed("amend", "-o", change, "img.qed");
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("qed: Cannot amend the backing ", result.StdErr);
        Assert.Single(result.StdErr.Trim().Split('\n'));
        Assert.Equal(hash, dir.Hash("img.qed"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qed", "want.raw"));
        Assert.Equal(1, dir.QemuImg("amend", "-o", change, "img.qed").ExitCode); // qemu-img refuses too

        Tool.Ok(dir.Qed("amend", "-o", "backing_fmt=qed", "img.qed")); // what it is: accepted, nothing changes
        Assert.Equal(hash, dir.Hash("img.qed"));
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
