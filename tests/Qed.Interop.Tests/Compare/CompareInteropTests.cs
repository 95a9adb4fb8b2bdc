using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Compare;

/// <summary><c>qed compare</c> gives qemu-img compare's verdict, message and exit code (0 same, 1 different, 2 error).</summary>
public class CompareInteropTests
{
    [Theory]
    [InlineData("identical", new string[0])]
    [InlineData("byte-at-1000", new string[0])]
    [InlineData("overlay-vs-base", new string[0])]
    [InlineData("longer-zero-tail", new string[0])]
    [InlineData("longer-zero-tail", new[] { "-s" })]
    [InlineData("longer-data-tail", new string[0])]
    [InlineData("missing", new string[0])]
    public void SameVerdictAsQemuImg(string setup, string[] flags)
    {
        using var dir = new TempDir();
        SampleImages.Make(dir, "data-zero-raw-backing");
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "flat.raw"));
        (string a, string b) = setup switch
        {
            "identical" => ("img.qed", "flat.raw"),
            "byte-at-1000" => Modified(dir, "write -P 0x99 1000 1"),
            "overlay-vs-base" => ("img.qed", "base.raw"),
            "longer-zero-tail" => Longer(dir, null),
            "longer-data-tail" => Longer(dir, "write -P 0x42 4200000 1"),
            _ => ("img.qed", "nothing-here.raw"),
        };
        var ours = dir.Qed(["compare", .. flags, a, b]);
        var theirs = dir.QemuImg(["compare", .. flags, a, b]);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(theirs.StdOut, ours.StdOut);
        if (theirs.ExitCode == 2)
        {
            Assert.Single(ours.StdErr.Trim().Split('\n'));
            Assert.Contains("nothing-here.raw", ours.StdErr);
        }
    }

    private static (string, string) Modified(TempDir dir, string command)
    {
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "mod.raw"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", command, "mod.raw"));
        return ("img.qed", "mod.raw");
    }

    private static (string, string) Longer(TempDir dir, string? command)
    {
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "long.raw"));
        Tool.Ok(dir.QemuImg("resize", "-f", "raw", "long.raw", "5M"));
        if (command != null) Tool.Ok(dir.QemuIo("-f", "raw", "-c", command, "long.raw"));
        return ("img.qed", "long.raw");
    }
}
