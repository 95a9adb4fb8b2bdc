using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Create;

/// <summary>
/// <c>qed create</c> prints what <c>qemu-img create</c> prints: its <c>Formatting 'FILE', fmt=...</c> line with the
/// options qemu-img 7.2 lists for each format, in its order (none with -q), and its error lines and exit codes.
/// Both run in the same state; qed's error lines start with its own name where qemu-img's start with "qemu-img".
/// </summary>
public class CreateOutputTests
{
    [Theory]
    [InlineData("-f qed x.qed 1000")]
    [InlineData("-f qed -o cluster_size=4k,table_size=2 x.qed 1M")]
    [InlineData("-f qed -o table_size=4 x.qed 1.5M")]
    [InlineData("-f qed -b base.qed -F qed x.qed")]
    [InlineData("-f qed -o backing_file=base.raw,backing_fmt=raw x.qed 3G")]
    [InlineData("-f qed -o backing_fmt=qed x.qed 1M")]
    [InlineData("-f qed -u -b missing.qed -F qed x.qed 1M")]
    [InlineData("-f qed -u -b a,b.raw -F raw x.qed 1M")] // a comma in an option value is printed doubled
    [InlineData("-f qcow2 -u -b a,b.raw -F raw x.qcow2 1M")]
    [InlineData("-q -f qed x.qed 1M")]
    [InlineData("-f raw x.raw 1M")]
    [InlineData("x.raw 1M")]
    [InlineData("-f raw -o preallocation=off x.raw 1M")]
    [InlineData("-f qcow2 x.qcow2 1M")]
    [InlineData("-f qcow2 -o compat=0.10 x.qcow2 1M")]
    [InlineData("-f qcow2 -o compat=v3,preallocation=off,cluster_size=4k x.qcow2 1M")]
    [InlineData("-f qcow2 -b base.qed -F qed x.qcow2")]
    // Failures: the message, any second line, and the exit code.
    [InlineData("-f qed -b base.qed x.qed")]
    [InlineData("-f qed -u -b missing.qed x.qed 1M")]
    [InlineData("-f qed -b missing.qed -F qed x.qed")]
    [InlineData("-f qed -b missing.qed x.qed")]
    [InlineData("-f qed -b base.qed -F qcow2 x.qed")]
    [InlineData("-f qed -o foo=bar x.qed 1M")]
    [InlineData("-f foo x.qed 1M")]
    [InlineData("-f qed x.qed")]
    [InlineData("-f raw -b base.raw -F raw x.raw 1M")]
    [InlineData("-f qed -o cluster_size=1000 x.qed 1M")]
    [InlineData("-f qed -o table_size=3 x.qed 1M")]
    [InlineData("-f qed x.qed 1P")]
    // A backing format that is no format: refused after the Formatting line with -u; before the file is opened without.
    [InlineData("-f qed -u -b base.raw -F foo x.qed 1M")]
    [InlineData("-f qed -b base.qed -F foo x.qed")]
    [InlineData("-f qed -b missing.qed -F foo x.qed")]
    [InlineData("-f qcow2 -b base.qed -F foo x.qcow2")]
    // qemu-img checks the backing format after the version and before the preallocation mode.
    [InlineData("-f qcow2 -o preallocation=foo -u -b base.raw -F foo x.qcow2 1M")]
    [InlineData("-f qcow2 -o compat=9,preallocation=foo -u -b base.raw -F foo x.qcow2 1M")]
    public void PrintsWhatQemuImgPrints(string arguments)
    {
        string[] args = ["create", .. arguments.Split(' ')];
        var theirs = RunIn(d => d.QemuImg(args));
        var ours = RunIn(d => d.Qed(args));
        Assert.Equal(theirs.StdOut, ours.StdOut);
        Assert.Equal(theirs.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), ours.StdErr);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
    }

    /// <summary>Runs <paramref name="run"/> in a fresh folder holding base.raw (5M) and base.qed (7M).</summary>
    private static ToolResult RunIn(Func<TempDir, ToolResult> run)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "5M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "base.qed", "7M"));
        return run(dir);
    }

    /// <summary>
    /// An option no command knows is named, as qemu-img names it (not the token after it), with its hint line and
    /// exit code 1, for every command.
    /// </summary>
    [Theory]
    [InlineData("check -Z base.qed")]
    [InlineData("info --foo base.qed")]
    [InlineData("create -f qed -Z x.qed 1M")]
    [InlineData("map -x base.qed")]
    [InlineData("resize -Z base.qed 1G")]
    public void UnknownOptionIsNamed(string arguments)
    {
        string[] args = arguments.Split(' ');
        var theirs = RunIn(d => d.QemuImg(args));
        var ours = RunIn(d => d.Qed(args));
        Assert.Equal(theirs.StdErr.Replace("qemu-img", "qed", StringComparison.Ordinal), ours.StdErr);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
    }
}
