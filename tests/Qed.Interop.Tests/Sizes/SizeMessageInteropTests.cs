using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Sizes;

/// <summary>
/// Sizes that qemu-img refuses are refused by qed with a message naming the value, and classed as qemu-img classes
/// them (invalid, or out of range); sizes it takes give the same byte count.
/// </summary>
public class SizeMessageInteropTests
{
    [Theory]
    [InlineData("99999999999999999999T", "Invalid size '99999999999999999999T': expected a number")] // was "... Decimal."
    [InlineData("8E", "Size '8E' is out of range: must be between 0 and 9223372036854775807")]       // was "invalid"
    [InlineData("16E", "Size '16E' is out of range")]
    [InlineData("18446744073709551616", "Size '18446744073709551616' is out of range")]
    [InlineData("1.5", "Invalid size '1.5'")]
    [InlineData("abc", "Invalid size 'abc'")]
    public void CreateRefusesASizeNamingItAndItsKind(string size, string message)
    {
        using var dir = new TempDir();
        var theirs = dir.QemuImg("create", "-f", "qed", "theirs.qed", size);
        var ours = dir.Qed("create", "-f", "qed", "ours.qed", size);
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal($"qed: {message}", Assert.Single(ours.StdErr.Trim().Split('\n'))[..(message.Length + 5)]);
        // qemu-img's class of the same text.
        Assert.Contains(message.Contains("out of range") ? "Must be between 0 and 9223372036854775807." : "You may use k, M, G, T, P or E suffixes", theirs.StdErr);
        Assert.False(File.Exists(dir["ours.qed"]));
    }

    [Theory]
    [InlineData("1.1k")]
    [InlineData("0.5k")]
    [InlineData("1.5T")]
    [InlineData("5.")]
    [InlineData("8191.9999P")]
    [InlineData("1K")]
    [InlineData("0.9999k")]
    [InlineData("4095.9999999999999k")]
    [InlineData("0.3333333333333333333333M")]
    public void AcceptedSizesGiveQemuImgsByteCount(string size)
    {
        using var dir = new TempDir();
        // qemu-img's Formatting line names the byte count it parsed (even where the size is then too large to make).
        string theirs = dir.QemuImg("create", "-f", "raw", "theirs.raw", size).StdOut;
        var match = System.Text.RegularExpressions.Regex.Match(theirs, @"size=(\d+)");
        Assert.True(match.Success, theirs);
        long want = long.Parse(match.Groups[1].Value);
        // Ours prints the same line before it creates (or fails to create) the file.
        string ours = dir.Qed("create", "-f", "raw", "ours.raw", size).StdOut;
        var oursMatch = System.Text.RegularExpressions.Regex.Match(ours, @"size=(\d+)");
        Assert.True(oursMatch.Success, ours);
        Assert.Equal(want, long.Parse(oursMatch.Groups[1].Value));
        if (want < 1L << 40) Assert.Equal(want, new FileInfo(dir["ours.raw"]).Length);
    }
}
