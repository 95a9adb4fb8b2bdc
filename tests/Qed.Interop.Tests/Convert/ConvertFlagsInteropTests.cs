using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Convert;

/// <summary>
/// convert's flags beyond the plain copy (-c, -r, -C, -l, --bitmaps, --salvage) against qemu-img convert on the same
/// source: the same exit code and messages (the program name aside), the same target existence, and on success the
/// same guest content. -c to qcow2 is the one known difference: qed refuses it, naming why.
/// </summary>
public partial class ConvertFlagsInteropTests
{
    [Theory]
    [InlineData("-c -O qed s.qed out")]
    [InlineData("-c -O raw s.qed out")]
    [InlineData("-r 1M -O raw s.qed out")]
    [InlineData("-r abc -O raw s.qed out")]
    [InlineData("-C -O raw s.qed out")]
    [InlineData("-l snap -O raw s.qed out")]
    [InlineData("-l snapshot.name=x -O raw s.qed out")]
    [InlineData("--bitmaps -O qcow2 s.qed out")]
    [InlineData("--bitmaps -O raw s.qed out")]
    [InlineData("--salvage -O qed s.qed out")]
    public void SameAsQemuImg(string commandLine)
    {
        string[] args = ["convert", .. commandLine.Split(' ')];
        using var ours = Setup();
        using var theirs = Setup();
        var q = ours.Qed(args);
        var t = theirs.QemuImg(args);
        Assert.True(t.ExitCode == q.ExitCode, $"{t}\n{q}");
        Assert.Equal(ProgramName().Replace(t.StdErr, ""), ProgramName().Replace(q.StdErr, ""));
        Assert.Equal(File.Exists(theirs["out"]), File.Exists(ours["out"]));
        if (t.ExitCode == 0) Tool.Ok(theirs.QemuImg("compare", "out", ours["out"]));
    }

    [Fact]
    public void CompressionToQcow2IsRefusedNamingIt()
    {
        using var dir = Setup();
        var q = dir.Qed("convert", "-c", "-O", "qcow2", "s.qed", "out");
        Assert.Equal(1, q.ExitCode);
        Assert.Contains("Compression not supported by qed", q.StdErr);
        Assert.False(File.Exists(dir["out"]));
    }

    private static TempDir Setup()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "s.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 9 0 64k", "-c", "write -P 3 500k 4k", "s.qed"));
        return dir;
    }

    [GeneratedRegex("^(qemu-img|qed): ", RegexOptions.Multiline)]
    private static partial Regex ProgramName();
}
