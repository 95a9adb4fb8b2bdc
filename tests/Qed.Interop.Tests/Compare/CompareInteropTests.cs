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

    /// <summary>
    /// Strict mode (-s) also compares block status: qemu-img's verdict, message and exit code for images of the same
    /// content but different allocation ("Strict mode: Offset N block status mismatch!"), and for content differences
    /// where the allocation matches.
    /// </summary>
    [Theory]
    [InlineData("", "", "qed")]
    [InlineData("write -P 0 0 64k", "write -z 0 64k", "qed")]
    [InlineData("write -P 0 0 64k", "write -P 0 0 64k;write -P 0 192k 64k", "qed")]
    [InlineData("write -P 0 0 32k", "write -P 0 0 64k", "qed")]
    [InlineData("write -P 1 0 64k;write -P 1 192k 4k", "write -P 1 0 64k;write -P 2 192k 4k", "qed")]
    [InlineData("write -P 1 128k 64k", "write -P 1 128k 64k", "qed")]
    [InlineData("", "", "raw")]
    [InlineData("write -P 0 128k 64k", "", "raw")]
    public void StrictSameVerdictAsQemuImg(string writesA, string writesB, string formatB)
    {
        using var dir = new TempDir();
        Make(dir, "a.qed", "qed", writesA);
        Make(dir, "b." + formatB, formatB, writesB);
        foreach (string[] pair in new[] { new[] { "a.qed", "b." + formatB }, new[] { "b." + formatB, "a.qed" } })
        {
            var ours = dir.Qed(["compare", "-s", .. pair]);
            var theirs = dir.QemuImg(["compare", "-s", .. pair]);
            Assert.True(theirs.ExitCode == ours.ExitCode, $"{theirs}\n{ours}");
            Assert.Equal(theirs.StdOut, ours.StdOut);
        }
    }

    private static void Make(TempDir dir, string name, string format, string writes)
    {
        Tool.Ok(dir.QemuImg("create", "-f", format, name, "1M"));
        foreach (string w in writes.Split(';', StringSplitOptions.RemoveEmptyEntries))
            Tool.Ok(dir.QemuIo("-f", format, "-c", w, name));
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
