using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Dd;

/// <summary>
/// <c>qed dd</c> against <c>qemu-img dd</c> run on the same source in a twin directory: the same exit code, the same
/// messages (the program name aside), and an output image of the same format, virtual size and guest bytes (a raw
/// output also of the same file size).
/// </summary>
public partial class DdInteropTests
{
    [Theory]
    [InlineData("if=src.qed of=out.qed -O qed")]
    [InlineData("if=src.qed of=out.qed -O qed bs=5")]
    [InlineData("if=src.qed of=out.raw bs=5 count=3 skip=1")]
    [InlineData("if=src.qed of=out.raw count=0")]
    [InlineData("if=src.qed of=out.raw bs=64k skip=3")]
    [InlineData("if=src.qed of=out.raw bs=3 skip=1")]
    [InlineData("if=src.qed of=out.raw bs=1k count=0x10")]
    [InlineData("if=src.qed of=out.raw bs=1.5k count=100")]
    [InlineData("if=src.qed of=out.raw bs=1M skip=1")]
    [InlineData("if=src.qed of=out.raw bs=512 skip=9999")]
    [InlineData("-f raw if=src.qed of=out.qcow2 -O qcow2 bs=7k skip=3")]
    [InlineData("if=other.qed of=out.raw if=src.qed bs=4k")]
    [InlineData("if=src.qed")]
    [InlineData("of=out.raw")]
    [InlineData("if=src.qed of=out.raw bs=0")]
    [InlineData("if=src.qed of=out.raw bs=2G")]
    [InlineData("if=src.qed of=out.raw bs=abc")]
    [InlineData("if=src.qed of=out.raw count=-1")]
    [InlineData("if=src.qed of=out.raw skip=x")]
    [InlineData("if=src.qed of=out.raw conv=notrunc")]
    [InlineData("if=src.qed ofx")]
    [InlineData("if=src.qed of=out.raw -O foo")]
    [InlineData("if= of=out.raw")]
    [InlineData("if=src.qed of=")]
    [InlineData("if=src.qed of=src.qed")]
    [InlineData("if=src.qed of=no/such/dir/out.raw")]
    public void SameAsQemuImg(string commandLine)
    {
        string[] args = ["dd", .. commandLine.Split(' ')];
        using var ours = Setup();
        using var theirs = Setup();
        string srcHash = ours.Hash("src.qed");
        var q = ours.Qed(args);
        var t = theirs.QemuImg(args);
        Assert.True(t.ExitCode == q.ExitCode, $"{t}\n{q}");
        Assert.Equal(Messages(t.StdErr), Messages(q.StdErr));
        Assert.Equal(t.StdOut, q.StdOut);
        Assert.Equal(srcHash, ours.Hash("src.qed"));
        string? output = commandLine.Split(' ').LastOrDefault(a => a.StartsWith("of=", StringComparison.Ordinal))?[3..];
        bool made = !string.IsNullOrEmpty(output) && File.Exists(theirs[output]) && output != "src.qed";
        if (output != "src.qed") Assert.Equal(made, !string.IsNullOrEmpty(output) && File.Exists(ours[output]));
        if (!made) return;
        var infoT = Tool.Ok(theirs.QemuImg("info", "--output=json", output!)).StdOut;
        var infoQ = Tool.Ok(theirs.QemuImg("info", "--output=json", ours[output!])).StdOut;
        Assert.Equal(Field(infoT, "format"), Field(infoQ, "format"));
        Assert.Equal(Field(infoT, "virtual-size"), Field(infoQ, "virtual-size"));
        var same = theirs.QemuImg("compare", output!, ours[output!]);
        Assert.True(same.ExitCode == 0, same.ToString());
        if (output!.EndsWith(".raw", StringComparison.Ordinal))
            Assert.Equal(theirs.Bytes(output).Length, ours.Bytes(output).Length);
    }

    private static TempDir Setup()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "src.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 64k", "-c", "write -P 2 100k 3k", "-c", "write -P 3 1000000 5", "src.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "other.qed", "2M"));
        return dir;
    }

    /// <summary>stderr with each line's program name ("qemu-img: ", "qed: ") and the test's directory taken out.</summary>
    private static string Messages(string stderr) => ProgramName().Replace(stderr, "");

    private static string? Field(string json, string name) =>
        Regex.Match(json, $"\"{name}\": (\"[^\"]*\"|[0-9]+)") is { Success: true } m ? m.Groups[1].Value : null;

    [GeneratedRegex("^(qemu-img|qed): ", RegexOptions.Multiline)]
    private static partial Regex ProgramName();
}
