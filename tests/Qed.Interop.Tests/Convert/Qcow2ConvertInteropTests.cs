using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Convert;

/// <summary>
/// qcow2 made by qemu-img (v2, v3, compressed, with a backing file) converts to QED and raw byte for byte; QED images
/// with and without backing files convert to qcow2 that qemu-img checks clean and compares equal.
/// </summary>
public class Qcow2ConvertInteropTests
{
    private static readonly string[] Writes = ["write -P 0x11 0 100k", "write -P 0x12 1M 64k", "write -P 0x13 3000000 777", "write -z 2M 256k", "write -P 0x14 6M 1M"];

    [Theory]
    [InlineData("v2")]
    [InlineData("v3")]
    [InlineData("compressed")]
    [InlineData("backing")]
    public void QemuQcow2ConvertsByteExactly(string kind)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "ref.raw", "8M"));
        Tool.Ok(dir.QemuIo(["-f", "raw", .. Scenario.C(Writes), "ref.raw"]));
        switch (kind)
        {
            case "v2":
                Tool.Ok(dir.QemuImg("convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", "ref.raw", "src.qcow2"));
                break;
            case "v3":
                Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "src.qcow2", "8M"));
                Tool.Ok(dir.QemuIo(["-f", "qcow2", .. Scenario.C(Writes), "src.qcow2"]));
                break;
            case "compressed":
                Tool.Ok(dir.QemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", "ref.raw", "src.qcow2"));
                break;
            case "backing":
                Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "base.qcow2", "8M"));
                Tool.Ok(dir.QemuIo("-f", "qcow2", "-c", "write -P 0x55 0 8M", "base.qcow2"));
                Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "src.qcow2"));
                Tool.Ok(dir.QemuIo(["-f", "qcow2", .. Scenario.C(Writes), "src.qcow2"]));
                Tool.Ok(dir.QemuImg("convert", "-O", "raw", "src.qcow2", "ref.raw"));
                break;
        }
        Tool.Ok(dir.Qed("convert", "-O", "raw", "src.qcow2", "out.raw"));
        Assert.True(dir.Bytes("ref.raw").AsSpan().SequenceEqual(dir.Bytes("out.raw")));
        Tool.Ok(dir.Qed("convert", "-O", "qed", "src.qcow2", "out.qed"));
        QemuCheck.AssertClean(dir, "out.qed");
        Tool.Ok(dir.Qed("convert", "-O", "raw", "out.qed", "back.raw"));
        Assert.True(dir.Bytes("ref.raw").AsSpan().SequenceEqual(dir.Bytes("back.raw")));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "out.qed", "ref.raw"));
    }

    [Theory]
    [InlineData("", "")]
    [InlineData("compat=0.10", "")]
    [InlineData("cluster_size=4096", "")]
    [InlineData("", "backing")]
    public void QedConvertsToQcow2(string options, string backing)
    {
        using var dir = new TempDir();
        if (backing.Length > 0)
        {
            Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "8M"));
            Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 8M", "base.raw"));
            Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "src.qed", "8M"));
        }
        else
        {
            Tool.Ok(dir.QemuImg("create", "-f", "qed", "src.qed", "8M"));
        }
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(Writes), "src.qed"]));
        string[] extra = options.Length == 0 ? [] : ["-o", options];
        Tool.Ok(dir.Qed(["convert", "-p", "-O", "qcow2", .. extra, "src.qed", "out.qcow2"]));
        Tool.Ok(dir.QemuImg("check", "-f", "qcow2", "out.qcow2"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "qcow2", "src.qed", "out.qcow2"));
        if (options.StartsWith("compat=0.10")) Assert.Contains("compat: 0.10", Tool.Ok(dir.QemuImg("info", "out.qcow2")).StdOut);

        // With -B the qcow2 keeps the backing file and holds only what differs from it.
        if (backing.Length > 0)
        {
            Tool.Ok(dir.Qed("convert", "-O", "qcow2", "-B", "base.raw", "-F", "raw", "src.qed", "thin.qcow2"));
            Tool.Ok(dir.QemuImg("check", "thin.qcow2"));
            Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "qcow2", "src.qed", "thin.qcow2"));
            Assert.True(new FileInfo(dir["thin.qcow2"]).Length < new FileInfo(dir["out.qcow2"]).Length);
        }
    }

    [Fact]
    public void TargetIsZeroNeedsDashN()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "src.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 3 1M 64k", "src.qed"));
        var refused = dir.Qed("convert", "--target-is-zero", "-O", "raw", "src.qed", "x.raw");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("-n", refused.StdErr);
        Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "dst.qcow2", "4M"));
        Tool.Ok(dir.Qed("convert", "-n", "--target-is-zero", "-O", "qcow2", "src.qed", "dst.qcow2"));
        Tool.Ok(dir.QemuImg("compare", "src.qed", "dst.qcow2"));
        Tool.Ok(dir.QemuImg("check", "dst.qcow2"));
    }
}
