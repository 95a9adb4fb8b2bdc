using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Qcow2Create;

/// <summary>
/// <c>qed create -f qcow2</c> against <c>qemu-img create -f qcow2</c> 7.2, option by option: the same Formatting line,
/// error lines and exit code; an image <c>qemu-img check</c> finds clean with the same allocation counts; the same
/// <c>qemu-img info</c> for both images; and <c>qed info</c> printing exactly what qemu-img info prints for each.
/// Each side runs in its own folder under the same file name, so names agree too.
/// </summary>
public class Qcow2CreateInteropTests
{
    public static TheoryData<string> Made => new(
        "",
        "-o compat=0.10",
        "-o compat=v2",
        "-o compat=1.1",
        "-o compat=v3",
        "-o lazy_refcounts=on",
        "-o lazy_refcounts=yes,compat=1.1",
        "-o lazy_refcounts=off",
        "-o refcount_bits=1",
        "-o refcount_bits=2",
        "-o refcount_bits=4",
        "-o refcount_bits=8",
        "-o refcount_bits=32",
        "-o refcount_bits=64",
        "-o refcount_bits=0x10",
        "-o compat=0.10,refcount_bits=16",
        "-o cluster_size=512",
        "-o cluster_size=4k,refcount_bits=1",
        "-o cluster_size=2M",
        "-o extended_l2=off,compression_type=zlib",
        "-o preallocation=off",
        "-o preallocation=metadata",
        "-o preallocation=falloc",
        "-o preallocation=full",
        "-o preallocation=metadata,compat=0.10",
        "-o preallocation=metadata,cluster_size=512",          // 12 L2 tables' worth per refcount block: blocks between runs
        "-o preallocation=metadata,cluster_size=4k,refcount_bits=1",
        "-o preallocation=metadata,cluster_size=4k,refcount_bits=64",
        "-o preallocation=full,refcount_bits=8,lazy_refcounts=on",
        "-b base.qcow2 -F qcow2",
        "-b base.raw -F raw -o compat=0.10",
        "-b base.qed -F qed -o refcount_bits=8,lazy_refcounts=on",
        "-u -b base.qcow2 -F qcow2 -o cluster_size=16k,compat=v2");

    [Theory]
    [MemberData(nameof(Made))]
    public void MakesTheImageQemuImgMakes(string options) =>
        AssertMakesWhatQemuImgMakes(options, options.Contains("-b ") && !options.Contains("-u") ? null : "5M");

    /// <summary>Sizes at the edges: an empty guest (no L1 table at all), and sizes that end inside a sector or a cluster.</summary>
    [Theory]
    [InlineData("", "0")]
    [InlineData("-o refcount_bits=1", "0")]
    [InlineData("-o preallocation=metadata", "0")]
    [InlineData("", "1")]
    [InlineData("-o preallocation=metadata", "100000")]
    [InlineData("-o preallocation=falloc,cluster_size=512", "1")]
    [InlineData("-o preallocation=full", "65537")]
    [InlineData("-o preallocation=metadata,cluster_size=4k", "2M")]        // exactly one L2 table's reach
    [InlineData("-o preallocation=metadata,cluster_size=512", "32769")]    // one sector past one L2 table's reach
    public void MakesTheImageQemuImgMakesForEdgeSizes(string options, string size) => AssertMakesWhatQemuImgMakes(options, size);

    private static void AssertMakesWhatQemuImgMakes(string options, string? size)
    {
        string[] args = Args(options, "x.qcow2", size);
        using var theirs = new TempDir();
        using var ours = new TempDir();
        var qemu = Run(theirs, d => d.QemuImg(args));
        var qed = Run(ours, d => d.Qed(args));
        Assert.True(qemu.ExitCode == 0, qemu.ToString());
        AssertSameOutput(qemu, qed);

        var check = Tool.Ok(theirs.QemuImg("check", "x.qcow2"));
        var ourCheck = Tool.Ok(ours.QemuImg("check", "x.qcow2"));
        Assert.Contains("No errors were found on the image.", ourCheck.StdOut);
        Assert.Equal(check.StdOut, ourCheck.StdOut); // the same allocation counts and image end offset
        Assert.Equal(WithoutDiskSize(Tool.Ok(theirs.QemuImg("info", "x.qcow2")).StdOut), WithoutDiskSize(Tool.Ok(ours.QemuImg("info", "x.qcow2")).StdOut));
        foreach (var dir in new[] { theirs, ours })
            AssertInfoAgrees(dir, "x.qcow2");
    }

    /// <summary>
    /// Where qemu-img moves its refcount table and qed does not, the files end a few clusters apart and everything
    /// else agrees: small clusters with a table that outgrows one cluster (qemu-img moves it to the end of the file,
    /// qed sizes it up front), and an empty guest with falloc or full (qemu-img moves the table one cluster on).
    /// </summary>
    [Theory]
    [InlineData("-o preallocation=metadata,cluster_size=512,refcount_bits=64", "3M")]
    [InlineData("-o preallocation=full,cluster_size=512", "0")]
    [InlineData("-o preallocation=falloc", "0")]
    public void WhereQemuImgMovesItsRefcountTableTheImageIsCleanWithTheSameAllocation(string options, string size)
    {
        string[] args = Args(options, "x.qcow2", size);
        using var theirs = new TempDir();
        using var ours = new TempDir();
        AssertSameOutput(Run(theirs, d => d.QemuImg(args)), Run(ours, d => d.Qed(args)));
        var check = Tool.Ok(theirs.QemuImg("check", "x.qcow2")).StdOut.Split('\n');
        var ourCheck = Tool.Ok(ours.QemuImg("check", "x.qcow2")).StdOut.Split('\n');
        Assert.Equal(check[..^2], ourCheck[..^2]); // no errors; the same allocated/total line (if any)
        Assert.Contains("No errors were found on the image.", ourCheck[0]);
        AssertInfoAgrees(ours, "x.qcow2");
    }

    public static TheoryData<string> Refused => new(
        "-o compat=0.10,lazy_refcounts=on",
        "-o compat=0.10,refcount_bits=8",
        "-o refcount_bits=3",
        "-o refcount_bits=0",
        "-o refcount_bits=-1",
        "-o refcount_bits=128",
        "-o refcount_bits=016",                 // octal 14
        "-o refcount_bits=x",
        "-o refcount_bits=16k",
        "-o refcount_bits=18446744073709551616",
        "-o lazy_refcounts=maybe",
        "-o lazy_refcounts=ON",
        "-o extended_l2=1",
        "-o preallocation=foo",
        "-o preallocation=metadata -b base.raw -F raw",
        "-o preallocation=full,compat=0.10,lazy_refcounts=on -b base.qcow2 -F qcow2",
        "-o compat=9",
        "-o compat=1.0,preallocation=foo",
        "-o preallocation=foo,compression_type=lz4",
        "-o compression_type=lz4",
        "-o compression_type=zstd,compat=0.10",
        "-o extended_l2=on,compat=0.10",
        "-o extended_l2=on,cluster_size=4k",
        "-o extended_l2=on,compat=0.10,cluster_size=1000",
        "-o cluster_size=1000",
        "-o cluster_size=256",
        "-o cluster_size=4M",
        "-o cluster_size=x",
        "-o cluster_size=1000,compat=0.10,lazy_refcounts=on",
        "-o foo=bar,refcount_bits=x",
        "-o refcount_bits=x,foo=bar",
        "-o lazy_refcounts=x,cluster_size=x",
        "-o backing_fmt=raw",
        "-o backing_fmt=raw,refcount_bits=3",
        "-u -b base.raw -F foo",
        "-o cluster_size=512 SIZE=137438953984",
        "-o cluster_size=512,refcount_bits=3 SIZE=100T",
        "-o cluster_size=512,compat=0.10,compression_type=zstd SIZE=100T");

    [Theory]
    [MemberData(nameof(Refused))]
    public void RefusesWhatQemuImgRefusesInItsWords(string options)
    {
        string size = options.Contains("SIZE=") ? options[(options.IndexOf("SIZE=") + 5)..] : "1M";
        options = options.Contains("SIZE=") ? options[..options.IndexOf(" SIZE=")] : options;
        string[] args = Args(options, "x.qcow2", options.Contains("-b ") && !options.Contains("-u") ? null : size);
        using var theirs = new TempDir();
        using var ours = new TempDir();
        var qemu = Run(theirs, d => d.QemuImg(args));
        var qed = Run(ours, d => d.Qed(args));
        Assert.True(qemu.ExitCode != 0, qemu.ToString());
        AssertSameOutput(qemu, qed);
        Assert.False(File.Exists(ours["x.qcow2"]), "a refused create left a file");
    }

    /// <summary>
    /// What qemu-img accepts but qed could not open afterwards (subclusters, zstd) is refused after qemu-img's own
    /// checks, with the same Formatting line, one line naming the option, exit 1, and no file.
    /// </summary>
    [Theory]
    [InlineData("-o extended_l2=on", "extended_l2=on is not supported")]
    [InlineData("-o extended_l2=on,cluster_size=16k", "extended_l2=on is not supported")]
    [InlineData("-o compression_type=zstd", "compression_type=zstd is not supported")]
    public void RefusesWhatItCouldNotOpenAfterQemuImgsChecks(string options, string message)
    {
        string[] args = Args(options, "x.qcow2", "1M");
        using var theirs = new TempDir();
        using var ours = new TempDir();
        var qemu = Tool.Ok(Run(theirs, d => d.QemuImg(args)));
        var qed = Run(ours, d => d.Qed(args));
        Assert.Equal(qemu.StdOut, qed.StdOut);
        Assert.Equal(1, qed.ExitCode);
        Assert.StartsWith($"qed: x.qcow2: {message}", qed.StdErr);
        Assert.Single(qed.StdErr.TrimEnd('\n').Split('\n'));
        Assert.False(File.Exists(ours["x.qcow2"]));
    }

    /// <summary>
    /// Images qed made with each refcount width and preallocation take qed's writes (allocating, zeroing, discarding),
    /// stay clean for qemu-img check, and read back through qemu-io as written.
    /// </summary>
    [Theory]
    [InlineData("refcount_bits=1")]
    [InlineData("refcount_bits=2")]
    [InlineData("refcount_bits=4")]
    [InlineData("refcount_bits=8")]
    [InlineData("refcount_bits=32")]
    [InlineData("refcount_bits=64")]
    [InlineData("refcount_bits=1,cluster_size=512")]   // 4,096 clusters per block: the file outgrows the first
    [InlineData("refcount_bits=64,cluster_size=512")]  // 64 clusters per block: many blocks made while writing
    [InlineData("lazy_refcounts=on")]
    [InlineData("preallocation=metadata")]
    [InlineData("preallocation=metadata,cluster_size=512,refcount_bits=8")]
    [InlineData("preallocation=falloc,compat=0.10")]
    [InlineData("preallocation=full,refcount_bits=2")]
    public void QedWritesReadBackThroughQemuIo(string options)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.Qed("create", "-q", "-f", "qcow2", "-o", options, "x.qcow2", "4M"));
        Tool.Ok(dir.Qed("io", "-c", "write -P 0x5a 0 3M", "-c", "write -z 1M 64k", "-c", "discard 2M 64k", "-c", "write -P 0x17 3800k 4k", "x.qcow2"));
        var check = dir.QemuImg("check", "x.qcow2");
        Assert.True(check.ExitCode == 0 && check.StdOut.Contains("No errors were found on the image."), check.ToString());
        var read = Tool.Ok(dir.QemuIo("-c", "read -P 0x5a 0 1M", "-c", "read -P 0 1M 64k", "-c", "read -P 0 2M 64k",
            "-c", "read -P 0x5a 2162688 983040", "-c", "read -P 0 3M 728k", "-c", "read -P 0x17 3800k 4k", "-c", "read -P 0 3804k 292k", "x.qcow2"));
        Assert.DoesNotContain("Pattern verification failed", read.StdOut + read.StdErr);
        Assert.Equal(7, read.StdOut.Split('\n').Count(l => l.StartsWith("read ")));
        // And qed's own engine reads what it wrote after the image is closed and reopened.
        var ours = Tool.Ok(dir.Qed("io", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0x17 3800k 4k", "x.qcow2"));
        Assert.DoesNotContain("Pattern verification failed", ours.StdOut + ours.StdErr);
    }

    /// <summary><c>convert -O qcow2 -o ...</c> makes the target through the same creator: the options reach the image.</summary>
    [Fact]
    public void ConvertTakesTheQcow2Options()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "src.qed", "3M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 64k 1M", "src.qed"));
        Tool.Ok(dir.Qed("convert", "-O", "qcow2", "-o", "refcount_bits=8,lazy_refcounts=on,preallocation=metadata,cluster_size=4k", "src.qed", "dst.qcow2"));
        Assert.Contains("No errors were found on the image.", Tool.Ok(dir.QemuImg("check", "dst.qcow2")).StdOut);
        Assert.Equal(0, dir.QemuImg("compare", "src.qed", "dst.qcow2").ExitCode);
        var info = Tool.Ok(dir.QemuImg("info", "dst.qcow2")).StdOut;
        Assert.Contains("lazy refcounts: true", info);
        Assert.Contains("refcount bits: 8", info);
        Assert.Contains("cluster_size: 4096", info);
        AssertInfoAgrees(dir, "dst.qcow2");
    }

    /// <summary>
    /// convert refuses the options create refuses, in qemu-img convert's words: a value or combination the format
    /// refuses names the target ("FILE: error while converting qcow2: ..."), a type or unknown key does not.
    /// </summary>
    [Theory]
    [InlineData("refcount_bits=3")]
    [InlineData("compat=0.10,lazy_refcounts=on")]
    [InlineData("preallocation=foo")]
    [InlineData("compat=1.2")]
    [InlineData("cluster_size=1000")]
    [InlineData("refcount_bits=x")]
    [InlineData("lazy_refcounts=maybe")]
    [InlineData("foo=bar")]
    public void ConvertRefusesInQemuImgConvertsWords(string options)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "src.qed", "1M"));
        var qemu = dir.QemuImg("convert", "-O", "qcow2", "-o", options, "src.qed", "dst.qcow2");
        var qed = dir.Qed("convert", "-O", "qcow2", "-o", options, "src.qed", "dst.qcow2");
        Assert.True(qemu.ExitCode != 0, qemu.ToString());
        AssertSameOutput(qemu, qed);
        Assert.False(File.Exists(dir["dst.qcow2"]));
    }

    /// <summary>qed info and qemu-img info print the same, text and JSON, with and without --backing-chain (disk usage aside).</summary>
    internal static void AssertInfoAgrees(TempDir dir, string image)
    {
        foreach (string[] extra in new[] { Array.Empty<string>(), ["--backing-chain"], ["--output=json"], ["--output=json", "--backing-chain"] })
        {
            var theirs = Tool.Ok(dir.QemuImg(["info", .. extra, image]));
            var ours = Tool.Ok(dir.Qed(["info", .. extra, image]));
            Assert.Equal(WithoutDiskSize(theirs.StdOut), WithoutDiskSize(ours.StdOut));
        }
    }

    /// <summary>Without the lines that report host disk usage (st_blocks against our extent sum: see InfoInteropTests).</summary>
    internal static string WithoutDiskSize(string text) =>
        string.Join('\n', text.Split('\n').Where(l => !l.StartsWith("disk size:") && !l.Contains("\"actual-size\"")));

    private static void AssertSameOutput(ToolResult qemu, ToolResult qed)
    {
        Assert.Equal(qemu.StdOut, qed.StdOut);
        Assert.Equal(qemu.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), qed.StdErr);
        Assert.Equal(qemu.ExitCode, qed.ExitCode);
    }

    private static string[] Args(string options, string file, string? size)
    {
        var args = new List<string> { "create", "-f", "qcow2" };
        args.AddRange(options.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        args.Add(file);
        if (size != null) args.Add(size);
        return [.. args];
    }

    /// <summary>Runs <paramref name="run"/> in <paramref name="dir"/> after making base.raw (5M), base.qed (6M) and base.qcow2 (7M) there.</summary>
    private static ToolResult Run(TempDir dir, Func<TempDir, ToolResult> run)
    {
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "base.raw", "5M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "base.qed", "6M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qcow2", "base.qcow2", "7M"));
        return run(dir);
    }
}
