using Qed.Formats.Qcow2;

namespace Qed.Interop.Tests.Qcow2;

/// <summary>
/// Images this library writes pass <c>qemu-img check</c> (no corruption, no leaks) and equal an in-memory model by
/// <c>qemu-img compare</c>.
/// </summary>
public sealed class Qcow2WriteInteropTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Random writes, zero writes and discards, applied to the image and to the model alike.</summary>
    private static async Task MutateAsync(DiskImage img, byte[] model, int seed, int operations, int maxLength, bool discardZeroes)
    {
        var rnd = new Random(seed);
        for (int i = 0; i < operations; i++)
        {
            long off = rnd.NextInt64(0, model.Length);
            int len = (int)Math.Min(rnd.Next(1, maxLength), model.Length - off);
            int op = rnd.Next(10);
            if (op < 7)
            {
                var data = new byte[len];
                rnd.NextBytes(data);
                await img.WriteAsync(off, data);
                data.CopyTo(model, off);
            }
            else if (op < 9)
            {
                await img.WriteZeroesAsync(off, len);
                Array.Clear(model, (int)off, len);
            }
            else
            {
                // Discard is advisory: afterwards a range reads as zeroes or as before. Model it by reading back.
                await img.DiscardAsync(off, len);
                var back = new byte[len];
                await img.ReadAsync(off, back);
                for (int j = 0; j < len; j++)
                    Assert.True(back[j] == model[off + j] || (discardZeroes && back[j] == 0), $"discard at {off}+{len} left byte {j} = {back[j]}");
                back.CopyTo(model, off);
            }
            if (i % 37 == 0) await img.FlushAsync();
        }
    }

    private void AssertCheckClean(string image)
    {
        var (exit, output) = QemuImg.Run("qemu-img", "check", image);
        Assert.True(exit == 0, $"qemu-img check {image} exited {exit}: {output}");
        Assert.Contains("No errors were found", output);
    }

    private async Task AssertEqualsModelAsync(string image, byte[] model)
    {
        string raw = image + ".model";
        await File.WriteAllBytesAsync(raw, model);
        var (exit, output) = QemuImg.Run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw);
        Assert.True(exit == 0, $"qemu-img compare exited {exit}: {output}");
        // And through the library after a reopen.
        await using var img = await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true });
        var actual = new byte[img.Size];
        await img.ReadAsync(0, actual);
        Assert.True(model.AsSpan().SequenceEqual(actual), "the library reads the image back differently from the model");
    }

    [Theory]
    [InlineData(3, 65536, 20 << 20)]
    [InlineData(2, 65536, 20 << 20)]
    [InlineData(3, 4096, 9 << 20)]
    [InlineData(2, 512, 3 << 20)]
    public async Task WrittenImagesPassCheckAndCompare(int version, int clusterSize, int size)
    {
        string image = _dir["w.qcow2"];
        await (await DiskImage.CreateAsync(image, ImageFormat.Qcow2, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, Version = version })).DisposeAsync();
        AssertCheckClean(image);
        string info = QemuImg.Ok("qemu-img", "info", image);
        Assert.Contains(version == 3 ? "compat: 1.1" : "compat: 0.10", info);
        var model = new byte[size];
        await using (var img = await DiskImage.OpenAsync(image))
            await MutateAsync(img, model, version * 1000 + clusterSize, 300, 300000, discardZeroes: true);
        AssertCheckClean(image);
        await AssertEqualsModelAsync(image, model);
        // A second session on the reopened image keeps everything consistent.
        await using (var img = await DiskImage.OpenAsync(image))
            await MutateAsync(img, model, 7, 100, 100000, discardZeroes: true);
        AssertCheckClean(image);
        await AssertEqualsModelAsync(image, model);
    }

    [Fact]
    public async Task RefcountTableGrowsWhenTheFileOutgrowsIt()
    {
        // 512-byte clusters: one refcount table cluster covers 64 blocks of 256 clusters, i.e. 8 MiB of file.
        string image = _dir["g.qcow2"];
        const int size = 12 << 20;
        await (await DiskImage.CreateAsync(image, ImageFormat.Qcow2, new Qcow2CreateOptions { Size = size, ClusterSize = 512 })).DisposeAsync();
        var model = new byte[size];
        new Random(11).NextBytes(model);
        await using (var img = await DiskImage.OpenAsync(image))
        {
            for (int off = 0; off < size; off += 1 << 20)
                await img.WriteAsync(off, model.AsMemory(off, 1 << 20));
        }
        AssertCheckClean(image);
        await AssertEqualsModelAsync(image, model);
        await using var reopened = (Qcow2Image)await DiskImage.OpenAsync(image, new ImageOpenOptions { ReadOnly = true });
        Assert.True(reopened.Header.RefcountTableClusters > 1, "the refcount table should have grown");
    }

    [Fact]
    public async Task OverlayOnQemuQcow2BackingCopiesPartialClustersFromBelow()
    {
        string base_ = _dir["base.qcow2"], top = _dir["top.qcow2"];
        const int size = 17 << 20;
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", base_, "17M");
        QemuImg.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 9M", "-c", "write -P 0x22 10M 3M", base_);
        await (await DiskImage.CreateAsync(top, ImageFormat.Qcow2, new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = ImageFormat.Qcow2 })).DisposeAsync();
        Assert.Contains("backing file format: qcow2", QemuImg.Ok("qemu-img", "info", top));
        var model = new byte[size];
        await using (var b = await DiskImage.OpenAsync(base_, new ImageOpenOptions { ReadOnly = true })) await b.ReadAsync(0, model);
        await using (var img = await DiskImage.OpenAsync(top))
        {
            Assert.Equal(size, img.Size);
            await MutateAsync(img, model, 21, 300, 200000, discardZeroes: true);
        }
        AssertCheckClean(top);
        await AssertEqualsModelAsync(top, model);
        // qemu-img map sees our zero clusters and data as qemu would.
        QemuImg.Ok("qemu-img", "map", "--output=json", top);
    }

    [Fact]
    public async Task Qcow2OverlayOnQedAndVersion2OverlayOnRaw()
    {
        string qed = _dir["base.qed"], top = _dir["top.qcow2"], raw = _dir["base.raw"], top2 = _dir["top2.qcow2"];
        const int size = 9 << 20;
        QemuImg.Ok("qemu-img", "create", "-f", "qed", qed, "9M");
        QemuImg.Ok("qemu-io", "-f", "qed", "-c", "write -P 0x5c 1M 3M", qed);
        await (await DiskImage.CreateAsync(top, ImageFormat.Qcow2, new Qcow2CreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed })).DisposeAsync();
        var model = new byte[size];
        await using (var b = await DiskImage.OpenAsync(qed, new ImageOpenOptions { ReadOnly = true })) await b.ReadAsync(0, model);
        await using (var img = await DiskImage.OpenAsync(top))
        {
            Assert.Equal(ImageFormat.Qed, img.Backing!.Format);
            await MutateAsync(img, model, 31, 200, 150000, discardZeroes: true);
        }
        AssertCheckClean(top);
        await AssertEqualsModelAsync(top, model);

        var content = new byte[size];
        new Random(4).NextBytes(content);
        await File.WriteAllBytesAsync(raw, content);
        await (await DiskImage.CreateAsync(top2, ImageFormat.Qcow2, new Qcow2CreateOptions { BackingFile = raw, BackingFormat = ImageFormat.Raw, Version = 2 })).DisposeAsync();
        await using (var img = await DiskImage.OpenAsync(top2))
            await MutateAsync(img, content, 41, 200, 150000, discardZeroes: false);
        AssertCheckClean(top2);
        await AssertEqualsModelAsync(top2, content);
    }

    [Fact]
    public async Task WritingOverCompressedClustersFreesThem()
    {
        string source = _dir["s.raw"], image = _dir["c.qcow2"];
        var model = new byte[6 << 20];
        for (int i = 0; i < model.Length; i++) model[i] = (byte)(i / 4096 % 3 == 0 ? 0 : i / 100);
        await File.WriteAllBytesAsync(source, model);
        QemuImg.Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", source, image);
        await using (var img = await DiskImage.OpenAsync(image))
            await MutateAsync(img, model, 51, 200, 100000, discardZeroes: true);
        AssertCheckClean(image);
        await AssertEqualsModelAsync(image, model);
    }

    [Fact]
    public async Task ConcurrentWritersOnSharedClusters()
    {
        string image = _dir["p.qcow2"];
        const int size = 16 << 20;
        await (await DiskImage.CreateAsync(image, ImageFormat.Qcow2, new Qcow2CreateOptions { Size = size })).DisposeAsync();
        var model = new byte[size];
        new Random(8).NextBytes(model);
        await using (var img = await DiskImage.OpenAsync(image))
        {
            // 16 writers, each owning every 16th 10000-byte slice: slices share clusters, so allocations race.
            var tasks = Enumerable.Range(0, 16).Select(w => Task.Run(async () =>
            {
                for (int off = w * 10000; off < size; off += 16 * 10000)
                {
                    int len = Math.Min(10000, size - off);
                    await img.WriteAsync(off, model.AsMemory(off, len));
                    if (off % 7 == 0) await img.FlushAsync();
                }
            })).ToArray();
            await Task.WhenAll(tasks);
        }
        AssertCheckClean(image);
        await AssertEqualsModelAsync(image, model);
    }

    [Fact]
    public async Task CreatedLayoutMatchesQemuForPlainImages()
    {
        // Same geometry as qemu-img create: header, refcount table, one block, L1; qemu-img check sees 4 clusters.
        string ours = _dir["ours.qcow2"], theirs = _dir["theirs.qcow2"];
        await (await DiskImage.CreateAsync(ours, ImageFormat.Qcow2, new Qcow2CreateOptions { Size = 1L << 30 })).DisposeAsync();
        QemuImg.Ok("qemu-img", "create", "-f", "qcow2", theirs, "1G");
        var a = await File.ReadAllBytesAsync(ours);
        var b = await File.ReadAllBytesAsync(theirs);
        // The header fields agree (qemu also writes a feature name table after them, which we leave out), and so do
        // the refcount table, the refcount block and the L1 table, and the file length.
        Assert.True(a.AsSpan(0, 104).SequenceEqual(b.AsSpan(0, 104)), "header differs from qemu-img's");
        Assert.Equal(b.Length, a.Length);
        Assert.True(a.AsSpan(0x10000).SequenceEqual(b.AsSpan(0x10000)), "refcount structures or L1 differ from qemu-img's");
        AssertCheckClean(ours);
    }
}
