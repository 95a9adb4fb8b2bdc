using Qed.Formats.Qcow2;

namespace Qed.Interop.Tests.Qcow2;

/// <summary>qcow2 images made by qemu-img read byte-exactly through the library (compared with qemu-img convert -O raw).</summary>
public sealed class Qcow2ReadInteropTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Writes a pattern with qemu-io: data runs, a zeroed run, holes, an unaligned tail.</summary>
    private void Fill(string image, string format, int seed)
    {
        QemuImg.Ok("qemu-io", "-f", format, "-c", $"write -P {0x10 + seed} 0 100k", "-c", $"write -P {0x40 + seed} 1M 64k",
            "-c", $"write -P {0x70 + seed} 3000000 777", "-c", "write -z 2M 256k", "-c", $"write -P {0x90 + seed} 8M 1M",
            "-c", $"write -P {0x20 + seed} 15M 1M", image);
    }

    private async Task AssertSameAsQemuAsync(string image)
    {
        string raw = image + ".raw";
        QemuImg.Ok("qemu-img", "convert", "-O", "raw", image, raw);
        var expected = await File.ReadAllBytesAsync(raw);
        await using var img = await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(ImageFormat.Qcow2, img.Format);
        Assert.Equal(expected.Length, img.Size);
        var actual = new byte[img.Size];
        // Odd-sized reads cross cluster and table boundaries.
        for (long off = 0; off < actual.Length; off += 300007)
            await img.ReadAsync(off, actual.AsMemory((int)off, (int)Math.Min(300007, actual.Length - off)));
        Assert.True(expected.AsSpan().SequenceEqual(actual), $"{image} reads differently from qemu-img convert -O raw");
    }

    [Theory]
    [InlineData("0.10", 65536)]
    [InlineData("1.1", 65536)]
    [InlineData("1.1", 4096)]
    [InlineData("0.10", 512)]
    [InlineData("1.1", 2097152)]
    public async Task ReadsQemuImages(string compat, int clusterSize)
    {
        string image = _dir["a.qcow2"];
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", "-o", $"compat={compat},cluster_size={clusterSize}", image, "17M");
        Fill(image, "qcow2", 0);
        await AssertSameAsQemuAsync(image);
        await using var img = (Qcow2Image)await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(compat == "0.10" ? 2 : 3, img.Version);
    }

    [Fact]
    public async Task ReadsCompressedClusters()
    {
        string source = _dir["src.qcow2"], image = _dir["c.qcow2"];
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", source, "17M");
        Fill(source, "qcow2", 1);
        // Random data does not compress (qemu stores those clusters uncompressed); the patterns do.
        var random = new byte[200000];
        new Random(5).NextBytes(random);
        string rnd = _dir["rnd.bin"];
        await File.WriteAllBytesAsync(rnd, random);
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", $"write -P 0x33 12M 64k", source);
        QemuImg.Ok("qemu-img", "convert", "-c", "-O", "qcow2", source, image);
        string map = QemuImg.Ok("qemu-img", "map", "--output=json", image);
        Assert.Contains("\"data\": true", map);
        await AssertSameAsQemuAsync(image);
        // Compressed clusters are data to the chain map, without a file offset (qemu-img map gives none either).
        await using var img = await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true });
        var extent = await img.GetLayerExtentAsync(1 << 20, 65536);
        Assert.Equal(ExtentKind.Data, extent.Kind);
    }

    [Fact]
    public async Task ReadsCompressedV2WithSmallClusters()
    {
        string source = _dir["src.raw"], image = _dir["c2.qcow2"];
        var content = new byte[3 << 20];
        for (int i = 0; i < content.Length; i++) content[i] = (byte)(i / 1000 % 7 == 0 ? 0 : i % 251);
        await File.WriteAllBytesAsync(source, content);
        QemuImg.Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10,cluster_size=4096", source, image);
        await AssertSameAsQemuAsync(image);
    }

    [Fact]
    public async Task ReadsZeroClustersOverBacking()
    {
        string base_ = _dir["base.qcow2"], top = _dir["top.qcow2"];
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", base_, "17M");
        Fill(base_, "qcow2", 2);
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
        // Zero clusters in the top hide the backing data; a partial write keeps the rest of the cluster from below.
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", "write -z 8M 512k", "-c", "write -P 0xee 50000 1000", "-c", "write -z -u 15M 64k", top);
        string map = QemuImg.Ok("qemu-img", "map", "--output=json", top);
        Assert.Contains("\"zero\": true, \"data\": false", map);
        await AssertSameAsQemuAsync(top);
        await using var img = (Qcow2Image)await DiskImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("base.qcow2", img.BackingFilename);
        Assert.Equal(ImageFormat.Qcow2, img.BackingFormat);
        Assert.NotNull(img.Backing);
        Assert.Equal(ExtentKind.Zero, (await img.GetLayerExtentAsync(8 << 20, 512 << 10)).Kind);
    }

    [Fact]
    public async Task ReadsImageWithBackingOfProbedFormatAndShorterBacking()
    {
        string base_ = _dir["base.raw"], top = _dir["top.qcow2"];
        var content = new byte[5 << 20];
        new Random(3).NextBytes(content);
        await File.WriteAllBytesAsync(base_, content);
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", "-u", "-b", base_, "-F", "raw", top, "9M");
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 4M 2M", top);
        await AssertSameAsQemuAsync(top);
    }

    [Fact]
    public async Task ReadsImageWithInternalSnapshotAndListsIt()
    {
        string image = _dir["s.qcow2"];
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", image, "17M");
        Fill(image, "qcow2", 3);
        QemuImg.Ok("qemu-img", "snapshot", "-c", "first", image);
        // After the snapshot, writes copy clusters (refcount 2): the active view differs from the snapshot's.
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 64k", "-c", "write -P 0x78 8M 100k", image);
        QemuImg.Ok("qemu-img", "snapshot", "-c", "second", image);
        await AssertSameAsQemuAsync(image);
        await using (var img = (Qcow2Image)await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal(["first", "second"], img.Snapshots.Select(s => s.Name));
            Assert.Equal((ulong)(17 << 20), img.Snapshots[0].DiskSize);
        } // closed first: its read lock would refuse the writable open below
        // Writing such an image is refused with a clear message (copy-on-write of shared clusters is not implemented).
        var e = await Assert.ThrowsAsync<NotSupportedException>(async () => await DiskImage.OpenAsync(image));
        Assert.Contains("snapshot", e.Message);
    }

    [Fact]
    public async Task QedOverQcow2ChainReads()
    {
        string base_ = _dir["base.qcow2"], top = _dir["top.qed"];
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", base_, "17M");
        Fill(base_, "qcow2", 4);
        QemuImg.Ok("qemu-img", "create", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2", top);
        QemuImg.Ok("qemu-io", "-f", "qed", "-c", "write -P 0xab 8300000 300000", top);
        await AssertSameAsQemuAsync(base_);
        string raw = top + ".raw";
        QemuImg.Ok("qemu-img", "convert", "-O", "raw", top, raw);
        await using var img = await DiskImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(ImageFormat.Qcow2, img.Backing!.Format);
        var actual = new byte[img.Size];
        await img.ReadAsync(0, actual);
        Assert.True((await File.ReadAllBytesAsync(raw)).AsSpan().SequenceEqual(actual));
    }

    [Fact]
    public async Task Qcow2OverQedChainReads()
    {
        string base_ = _dir["base.qed"], top = _dir["top.qcow2"];
        QemuImg.Ok("qemu-img", "create", "-f", "qed", base_, "17M");
        Fill(base_, "qed", 5);
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qed", "-F", "qed", top);
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 1000000 300000", "-c", "write -z 8M 64k", top);
        await AssertSameAsQemuAsync(top);
        await using var img = await DiskImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(ImageFormat.Qed, img.Backing!.Format);
    }
}
