using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Snapshot;

/// <summary>
/// <c>qed snapshot</c> and <c>qed bitmap</c> on QED and raw images (formats without internal snapshots or persistent
/// bitmaps) give qemu-img's messages and exit codes, and leave the image as it was.
/// </summary>
public partial class SnapshotInteropTests
{
    [Theory]
    [InlineData("snapshot -l s.qed")]
    [InlineData("snapshot s.qed")]
    [InlineData("snapshot -U -l s.qed")]
    [InlineData("snapshot -c snap s.qed")]
    [InlineData("snapshot -q -c snap s.qed")]
    [InlineData("snapshot -a snap s.qed")]
    [InlineData("snapshot -d snap s.qed")]
    [InlineData("snapshot -a snap r.raw")]
    [InlineData("snapshot -d snap r.raw")]
    [InlineData("snapshot -l -c x s.qed")]
    [InlineData("snapshot -c x -a y s.qed")]
    [InlineData("snapshot -U -c x s.qed")]
    [InlineData("snapshot")]
    [InlineData("snapshot s.qed r.raw")]
    [InlineData("bitmap --add s.qed b0")]
    [InlineData("bitmap --add -f raw r.raw b0")]
    [InlineData("bitmap --remove s.qed b0")]
    [InlineData("bitmap --clear s.qed b0")]
    [InlineData("bitmap --enable s.qed b0")]
    [InlineData("bitmap --disable s.qed b0")]
    [InlineData("bitmap --merge x s.qed b0")]
    [InlineData("bitmap --add --remove s.qed b0")]
    [InlineData("bitmap --remove --add s.qed b0")]
    [InlineData("bitmap s.qed b0")]
    [InlineData("bitmap --add s.qed")]
    public void SameAsQemuImg(string commandLine)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "s.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "r.raw", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 5 0 64k", "s.qed"));
        string before = dir.Hash("s.qed") + dir.Hash("r.raw");
        string[] args = commandLine.Split(' ');
        var ours = dir.Qed(args);
        Assert.Equal(before, dir.Hash("s.qed") + dir.Hash("r.raw"));
        var theirs = dir.QemuImg(args);
        Assert.True(theirs.ExitCode == ours.ExitCode, $"{theirs}\n{ours}");
        Assert.Equal(theirs.StdOut, ours.StdOut);
        Assert.Equal(Normalize(theirs.StdErr), Normalize(ours.StdErr));
    }

    /// <summary>The program name taken out, and qemu-img's internal node name ("#block123") read as the file's name.</summary>
    private static string Normalize(string stderr) =>
        NodeName().Replace(ProgramName().Replace(stderr, "").Replace("'qemu-img --help'", "'qed --help'"), "FILE");

    [GeneratedRegex("^(qemu-img|qed): ", RegexOptions.Multiline)]
    private static partial Regex ProgramName();

    [GeneratedRegex(@"#block\d+|(?<=to )[sr]\.(qed|raw)(?=:)")]
    private static partial Regex NodeName();
}
