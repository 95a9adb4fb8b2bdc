using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Cli;

/// <summary>
/// A missing image, whichever command opens it (convert and compare included), prints qemu-img's lines with its exit
/// codes: each command runs under both tools in one fresh folder, the output compared with the tool's name taken out.
/// </summary>
public class OpenAndConvertMessageTests
{
    private static readonly Regex Prefix = new("^(qed|qemu-img): ", RegexOptions.Multiline);

    private static string Same(ToolResult r) => $"exit {r.ExitCode}\n{r.StdOut}\n{Prefix.Replace(r.StdErr, "")}";

    private static TempDir Images()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "a.qed", "1M"));
        return dir;
    }

    [Theory]
    [InlineData("info nothere.qed")]
    [InlineData("info -f qed nothere.qed")]
    [InlineData("info -f raw nothere")]
    [InlineData("info nodir/x.qed")]
    [InlineData("check nothere.qed")]
    [InlineData("check -r all nothere.qed")]
    [InlineData("map nothere.qed")]
    [InlineData("map --output=json nothere.qed")]
    [InlineData("convert -O qed nothere.qed out.qed")]
    [InlineData("convert -f qed -O raw nothere.qed out.raw")]
    [InlineData("compare nothere.qed a.qed")]
    [InlineData("compare a.qed nothere.qed")]
    [InlineData("measure -O qed nothere.qed")]
    [InlineData("snapshot -l nothere.qed")]
    [InlineData("commit nothere.qed")]
    [InlineData("rebase -u -b a.qed nothere.qed")]
    [InlineData("resize nothere.qed 2M")]
    [InlineData("amend -o size=2M nothere.qed")]
    [InlineData("bench nothere.qed")]
    [InlineData("dd if=nothere.qed of=x.qed")]
    [InlineData("bitmap --add nothere.qed b")]
    public void AMissingImageMatchesQemuImg(string command)
    {
        using var dir = Images();
        string[] args = command.Split(' ');
        Assert.Equal(Same(dir.QemuImg(args)), Same(dir.Qed(args)));
    }
}
