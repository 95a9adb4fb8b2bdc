using System.Text.RegularExpressions;
using Qed.Interop.Tests.Locking;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Rebase;

/// <summary>
/// <c>qed rebase</c> where qemu-img 7.2 is the oracle: which clusters a safe rebase makes the image own (iotest 024),
/// and which opens <c>-U</c> shares, beside a qemu-io writer. Each case runs qemu-img on one copy and qed on another
/// made the same way.
/// </summary>
public partial class RebaseLikeQemuImgTests
{
    /// <summary>
    /// Chains whose old and new backing files differ where the image holds nothing, all in subdir/ with the rebase run
    /// from the folder above (as iotest 024's last part): "hole" (the old backing file reads zeroes inside its size,
    /// the new one has data there), "short" (the old backing file ends mid-cluster, short of the image; past its end
    /// the new one has data), "none" (no old backing file).
    /// </summary>
    private static void Build(TempDir dir, string kind)
    {
        Directory.CreateDirectory(dir["subdir"]);
        switch (kind)
        {
            case "hole": // old: 11 11 -- 11, new: -- 22 22 11 (iotest 024)
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "subdir/old.qed", "1M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 0x11 0 128k", "-c", "write -P 0x11 192k 64k", "subdir/old.qed"));
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "subdir/new.qed", "1M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 0x22 64k 128k", "-c", "write -P 0x11 192k 64k", "subdir/new.qed"));
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "old.qed", "-F", "qed", "subdir/t.qed", "1M"));
                break;
            case "short":
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "subdir/old.raw", "1052672")); // 1 MiB + 4 KiB
                Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x11 0 512k", "subdir/old.raw"));
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "subdir/new.qed", "4M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 0x22 0 4M", "subdir/new.qed"));
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "old.raw", "-F", "raw", "subdir/t.qed", "4M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 3 2M 64k", "subdir/t.qed"));
                break;
            default:
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "subdir/new.qed", "2M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 0x22 0 1M", "subdir/new.qed"));
                Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "subdir/t.qed", "2M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 3 1M 64k", "subdir/t.qed"));
                break;
        }
    }

    [GeneratedRegex(", \"offset\": [0-9]+")]
    private static partial Regex HostOffset();

    /// <summary>
    /// qemu-img's safe rebase copies what the image read from inside the old backing file as data, even where that
    /// read zeroes (a hole), and hides the new backing file with zero clusters only past the old one's end (or with
    /// no old backing file). Ours reads the same and owns the same clusters: the same map, and the same guest content.
    /// </summary>
    [Theory]
    [InlineData("hole")]
    [InlineData("short")]
    [InlineData("none")]
    public void ASafeRebaseOwnsTheClustersQemuImgsDoes(string kind)
    {
        using var ours = new TempDir();
        using var theirs = new TempDir();
        Build(ours, kind);
        Build(theirs, kind);
        Tool.Ok(theirs.QemuImg("convert", "-O", "raw", "subdir/t.qed", "want.raw"));
        Tool.Ok(theirs.QemuImg("rebase", "-f", "qed", "-b", "new.qed", "-F", "qed", "subdir/t.qed"));
        Tool.Ok(ours.Qed("rebase", "-f", "qed", "-b", "new.qed", "-F", "qed", "subdir/t.qed"));

        Tool.Ok(ours.QemuImg("compare", "-F", "raw", "subdir/t.qed", theirs["want.raw"]));
        Tool.Ok(ours.QemuImg("compare", "-f", "qed", "-F", "qed", "subdir/t.qed", theirs["subdir/t.qed"]));
        // Host offsets depend on the order clusters were allocated in; what the image owns does not.
        string Map(TempDir dir) => HostOffset().Replace(Tool.Ok(dir.QemuImg("map", "--output=json", "subdir/t.qed")).StdOut, "");
        Assert.Equal(Map(theirs), Map(ours));
        Assert.Equal(Tool.Ok(theirs.QemuImg("map", "subdir/t.qed")).StdOut.Split('\n').Length,
            Tool.Ok(ours.QemuImg("map", "subdir/t.qed")).StdOut.Split('\n').Length);
        QemuCheck.AssertClean(ours, "subdir/t.qed");
    }

    /// <summary>old.qed &lt;- img.qed, and new.qed, each with data of its own.</summary>
    private static void BuildForLocks(TempDir dir)
    {
        foreach (string f in Directory.GetFiles(dir.Path)) File.Delete(f);
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "old.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x11 0 256k", "old.qed"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "new.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x22 0 128k", "new.qed"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "old.qed", "-F", "qed", "img.qed", "1M"));
    }

    /// <summary>
    /// Beside a qemu-io writer of one file of the rebase: <c>-U</c> shares the new backing file only (so a safe
    /// rebase onto an image being written works with it and is refused without it), never the image or its old
    /// backing chain. qed prints what qemu-img prints, exits as it does, and leaves the image as it leaves its copy.
    /// </summary>
    [Theory]
    [InlineData("new.qed", "")]
    [InlineData("new.qed", "-U")]
    [InlineData("old.qed", "-U")]
    [InlineData("img.qed", "")]
    [InlineData("img.qed", "-U")]
    [InlineData("new.qed", "-u")]
    public void DashUSharesTheNewBackingFileOnlyAsQemuImgDoes(string written, string flag)
    {
        using var dir = new TempDir();
        string[] args = flag == "" ? ["rebase", "-b", "new.qed", "-F", "qed", "img.qed"] : ["rebase", flag, "-b", "new.qed", "-F", "qed", "img.qed"];
        var results = new List<(ToolResult Result, string Content, string Info)>();
        foreach (bool qed in new[] { false, true })
        {
            BuildForLocks(dir);
            using (LockHolder.QemuIo(dir, written))
            {
                var result = qed ? dir.Qed(args) : dir.QemuImg(args);
                Tool.Ok(dir.QemuImg("convert", "-U", "-O", "raw", "img.qed", "img.raw"));
                string backing = string.Join('\n', Tool.Ok(dir.QemuImg("info", "-U", "img.qed")).StdOut.Split('\n').Where(l => l.StartsWith("backing file", StringComparison.Ordinal)));
                results.Add((result, dir.Hash("img.raw"), backing));
            }
        }
        var (theirs, theirContent, theirInfo) = results[0];
        var (ours, ourContent, ourInfo) = results[1];
        Assert.True(theirs.ExitCode == ours.ExitCode, $"{theirs}\n{ours}");
        Assert.Equal(theirs.StdErr.Replace("qemu-img: ", "qed: "), ours.StdErr);
        Assert.Equal(theirContent, ourContent);
        Assert.Equal(theirInfo, ourInfo);
    }
}
