using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Resize;

/// <summary>
/// <c>qed resize</c> on images made by qed and by qemu-img: qemu-img check is clean and the content equals a raw model
/// resized by qemu-img (zeroes in any grown range, the data before a new end kept).
/// </summary>
public class ResizeInteropTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "qemu-img", "8M" }, { "qed", "8M" },            // shrink, cluster aligned
        { "qemu-img", "5000192" }, { "qed", "5000192" },  // shrink into the middle of a data cluster
        { "qemu-img", "40M" }, { "qed", "40M" },          // grow
        { "qemu-img", "1M" },                             // shrink below every L2 table but the first
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void QedImagesResizeAndStayConsistent(string maker, string newSize)
    {
        using var dir = new TempDir();
        string[] writes = ["write -P 0x11 0 1M", "write -P 0x12 4900000 200000", "write -P 0x13 12M 3M", "write -z 9M 1M", "write -P 0x14 7M 64k"];
        Tool.Ok(maker == "qed" ? dir.Qed("create", "-f", "qed", "img.qed", "16M") : dir.QemuImg("create", "-f", "qed", "img.qed", "16M"));
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(writes), "img.qed"]));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "ref.raw", "16M"));
        Tool.Ok(dir.QemuIo(["-f", "raw", .. Scenario.C(writes), "ref.raw"]));
        long before = new FileInfo(dir["img.qed"]).Length;

        Tool.Ok(dir.Qed("resize", "--shrink", "img.qed", newSize));
        Tool.Ok(dir.QemuImg("resize", "-f", "raw", "--shrink", "ref.raw", newSize));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
        if (new FileInfo(dir["ref.raw"]).Length < 16 << 20) // the raw reference is exactly the new size
            Assert.True(new FileInfo(dir["img.qed"]).Length < before, "shrinking gives space back");

        // Growing back reads zeroes past the old end, never stale bytes of what was dropped.
        Tool.Ok(dir.Qed("resize", "img.qed", "48M"));
        Tool.Ok(dir.QemuImg("resize", "-f", "raw", "ref.raw", "48M"));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
    }

    [Fact]
    public void ShrinkMovesTablesAndDataDownSoTheFileIsExactlyWhatItHolds()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "img.qed", "16M"));
        // Written from the end backwards: the L2 table of the first 4 MiB and its data come last in the file.
        Tool.Ok(dir.QemuIo("-c", "write -P 4 12M 1M", "-c", "write -P 3 8M 1M", "-c", "write -P 2 4M 1M", "-c", "write -P 1 0 1M",
            "-c", "write -P 5 1536k 512k", "img.qed"));
        Tool.Ok(dir.Qed("resize", "--shrink", "img.qed", "2M"));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuIo("-c", "read -P 1 0 1M", "-c", "read -P 0 1M 512k", "-c", "read -P 5 1536k 512k", "img.qed"));
        // Header cluster, L1 (2 clusters), one L2 table (2 clusters) and 384 data clusters of 4 KiB: nothing else.
        Assert.Equal((1 + 2 + 2 + 384) * 4096L, new FileInfo(dir["img.qed"]).Length);
    }

    [Fact]
    public void UnknownCompatBitsAreKeptAndAutoclearBitsCleared()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "16M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 1M", "-c", "write -P 2 15M 1M", "img.qed"));
        HeaderEditor.SetU64(dir["img.qed"], 24, 0x40);  // compat: ignored, never rewritten away
        HeaderEditor.SetU64(dir["img.qed"], 32, 0x80);  // autoclear: cleared by a writer that does not know it
        Tool.Ok(dir.Qed("resize", "--shrink", "img.qed", "2M"));
        byte[] header = dir.Bytes("img.qed");
        Assert.Equal(0x40UL, BitConverter.ToUInt64(header, 24));
        Assert.Equal(0UL, BitConverter.ToUInt64(header, 32));
        Assert.Equal(2UL << 20, BitConverter.ToUInt64(header, 48));
        Tool.Ok(dir.QemuIo("-c", "read -P 1 0 1M", "-c", "read -P 0 1M 1M", "img.qed"));
    }

    [Fact]
    public void ShrinkWithoutTheFlagFailsAndChangesNothing()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "16M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 15M 1M", "img.qed"));
        string hash = dir.Hash("img.qed");
        var result = dir.Qed("resize", "img.qed", "8M");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("--shrink", result.StdErr);
        Assert.Single(result.StdErr.Trim().Split('\n'));
        var unaligned = dir.Qed("resize", "img.qed", "+1000");
        Assert.Equal(1, unaligned.ExitCode);
        Assert.Contains("multiple of 512", unaligned.StdErr);
        Assert.Equal(hash, dir.Hash("img.qed"));
    }

    [Fact]
    public void GrowingAnOverlayHidesALongerBackingFile()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 8M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed", "3M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 1M 64k", "img.qed"));
        Tool.Ok(dir.Qed("resize", "img.qed", "+5M"));
        QemuCheck.AssertClean(dir, "img.qed");
        // The model: 3 MiB of the base with the write, then zeroes to 8 MiB.
        Tool.Ok(dir.QemuImg("convert", "-f", "raw", "-O", "raw", "base.raw", "ref.raw"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 1 1M 64k", "-c", "write -z 3M 5M", "ref.raw"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
    }

    [Fact]
    public void ShrinkThenGrowOverALongerBackingFileReadsZeroes()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 8M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 1M 64k", "-c", "write -P 2 3M 4k", "-c", "write -P 3 6M 64k", "img.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img.qed", "ref.raw"));
        // 3 MiB + 512: the cut falls inside a data cluster; everything after it must read as zeroes once grown again.
        Tool.Ok(dir.Qed("resize", "--shrink", "img.qed", "3146240"));
        Tool.Ok(dir.Qed("resize", "img.qed", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -z 3146240 5242368", "ref.raw"));
        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "img.qed", "ref.raw"));
    }

    [Fact]
    public void RawAndQcow2Resize()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "a.raw", "4M"));
        Tool.Ok(dir.Qed("resize", "-f", "raw", "a.raw", "+1M"));
        Assert.Equal(5L << 20, new FileInfo(dir["a.raw"]).Length);
        Tool.Ok(dir.Qed("resize", "-f", "raw", "--shrink", "a.raw", "2M"));
        Assert.Equal(2L << 20, new FileInfo(dir["a.raw"]).Length);

        Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "b.qcow2", "4M"));
        Tool.Ok(dir.QemuIo("-f", "qcow2", "-c", "write -P 7 3M 1M", "b.qcow2"));
        Tool.Ok(dir.Qed("resize", "b.qcow2", "1G"));
        Tool.Ok(dir.QemuImg("check", "b.qcow2"));
        Assert.Contains("\"virtual-size\": 1073741824", Tool.Ok(dir.QemuImg("info", "--output=json", "b.qcow2")).StdOut);
        Tool.Ok(dir.QemuIo("-f", "qcow2", "-c", "read -P 7 3M 1M", "-c", "read -P 0 4M 1020M", "b.qcow2"));
    }
}
