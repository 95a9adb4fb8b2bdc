using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Commit;

/// <summary>
/// <c>qed commit</c> where qemu-img 7.2 is the oracle (iotest 020): which layer a <c>-b</c> name picks, and the words
/// and exit code of a commit that fails. Each case runs qemu-img on one copy of a chain and qed on another made the
/// same way, and compares what they print and what they leave in the layers.
/// </summary>
public class CommitLikeQemuImgTests
{
    /// <summary>
    /// In the folder: other/base.qed &lt;- other/mid.qed (naming "base.qed") &lt;- subdir/t.qed (naming
    /// "../other/mid.qed"), lnk a link to other; each layer writes its own cluster.
    /// </summary>
    private static void BuildChain(TempDir dir)
    {
        Directory.CreateDirectory(dir["subdir"]);
        Directory.CreateDirectory(dir["other"]);
        File.CreateSymbolicLink(dir["lnk"], "other");
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "other/base.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "base.qed", "-F", "qed", "other/mid.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "../other/mid.qed", "-F", "qed", "subdir/t.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x11 0 64k", "other/base.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x22 64k 64k", "other/mid.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 128k 64k", "subdir/t.qed"));
    }

    /// <summary>What each lower layer reads, as raw bytes: shows which one received the commit.</summary>
    private static string Layers(TempDir dir)
    {
        string hashes = "";
        foreach (string layer in new[] { "other/mid.qed", "other/base.qed" })
        {
            Tool.Ok(dir.QemuImg("convert", "-U", "-O", "raw", layer, "layer.raw"));
            hashes += dir.Hash("layer.raw") + " ";
        }
        return hashes;
    }

    /// <summary>
    /// A relative <c>-b</c> name is resolved against the folder of each layer in turn (the one naming the next), never
    /// the working directory, and matches when it is the same existing file once links are followed; an absolute
    /// name matches by its real path. (A name relative to the working directory is refused, as iotest 020 expects.)
    /// </summary>
    [Theory]
    [InlineData("../other/mid.qed")]      // as t.qed names it
    [InlineData("./../other/mid.qed")]    // the same file from t.qed's folder
    [InlineData("other/mid.qed")]         // relative to the working directory: not found
    [InlineData("mid.qed")]               // relative to mid's own folder, but mid is named from t.qed's: not found
    [InlineData("base.qed")]              // as mid names it
    [InlineData("../lnk/base.qed")]       // through a link
    [InlineData("nonexist/../base.qed")]  // resolved physically: a missing folder does not vanish before ".."
    [InlineData("ABS/other/mid.qed")]
    [InlineData("ABS/lnk/base.qed")]
    public void ADashBNamePicksTheLayerQemuImgPicks(string name)
    {
        using var ours = new TempDir();
        using var theirs = new TempDir();
        BuildChain(ours);
        BuildChain(theirs);
        var q = theirs.QemuImg("commit", "-b", name.Replace("ABS", theirs.Path), "subdir/t.qed");
        var o = ours.Qed("commit", "-b", name.Replace("ABS", ours.Path), "subdir/t.qed");
        Assert.True(q.ExitCode == o.ExitCode, $"{q}\n{o}");
        Assert.Equal(q.StdOut, o.StdOut);
        Assert.Equal(q.StdErr.Replace(theirs.Path, "ABS").Replace("qemu-img: ", "qed: "), o.StdErr.Replace(ours.Path, "ABS"));
        Assert.Equal(Layers(theirs), Layers(ours));
    }

    /// <summary>
    /// Any failure of the copy itself, reading the chain or writing the base, is qemu-img's "Block job failed: REASON"
    /// with exit 1 (iotest 020: a base whose blkdebug node fails a write with ENOSPC); the image is left as it was.
    /// </summary>
    [Theory]
    [InlineData(28)] // ENOSPC
    [InlineData(5)]  // EIO
    public void AWriteIntoTheBaseThatFailsIsABlockJobFailure(int errno)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "t.base", "1M"));
        string backing = "json:{\"driver\": \"qed\", \"file\": {\"driver\": \"blkdebug\", \"inject-error\": [{\"event\": \"write_aio\", "
            + $"\"errno\": {errno}, \"once\": true}}], \"image\": {{\"driver\": \"file\", \"filename\": \"{dir["t.base"]}\"}}}}}}";
        foreach (string copy in new[] { "ours.qed", "theirs.qed" })
        {
            Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", backing, "-F", "qed", copy, "1M"));
            Tool.Ok(dir.QemuIo("-c", "writev -P 0x5a 0 64k", copy));
        }
        string before = dir.Hash("ours.qed");
        var theirs = dir.QemuImg("commit", "theirs.qed");
        var ours = dir.Qed("commit", "ours.qed");
        Assert.Equal(1, theirs.ExitCode);
        Assert.True(ours.ExitCode == 1, ours.ToString());
        Assert.Equal(theirs.StdErr.Replace("qemu-img: ", "qed: "), ours.StdErr);
        Assert.StartsWith("qed: Block job failed: ", ours.StdErr);
        Assert.Equal("", ours.StdOut);
        Assert.Equal(before, dir.Hash("ours.qed"));
        QemuCheck.AssertClean(dir, "ours.qed");
    }

    /// <summary>A backing file that cannot be opened is named under the image, as qemu-img says it.</summary>
    [Fact]
    public void AMissingBaseIsReportedUnderTheImage()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "t.base", "1M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "t.base", "-F", "qed", "t.qed", "1M"));
        File.Delete(dir["t.base"]);
        string before = dir.Hash("t.qed");
        var theirs = dir.QemuImg("commit", "t.qed");
        var ours = dir.Qed("commit", "t.qed");
        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal("qemu-img: Could not open 't.qed': Could not open backing file: Could not open 't.base': No such file or directory\n", theirs.StdErr);
        Assert.Equal(theirs.StdErr.Replace("qemu-img: ", "qed: "), ours.StdErr);
        Assert.Equal(before, dir.Hash("t.qed"));
    }
}
