using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Qcow2;

/// <summary>
/// qcow2 creation with qemu-img's options: every refcount width and preallocation mode gives an image whose refcounts
/// count each cluster below the end once (as the engine reads them), which the engine opens, writes and reads back;
/// preallocation places tables as qemu-img 7.2 does; options are refused in qemu-img's order.
/// </summary>
public sealed class Qcow2CreateOptionsTests
{
    public static TheoryData<int, int, Qcow2Preallocation> Widths()
    {
        var data = new TheoryData<int, int, Qcow2Preallocation>();
        foreach (int bits in new[] { 1, 2, 4, 8, 16, 32, 64 })
            foreach (var mode in new[] { Qcow2Preallocation.Off, Qcow2Preallocation.Metadata, Qcow2Preallocation.Full })
                data.Add(bits, bits is 1 or 64 ? 512 : 4096, mode);
        return data;
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public async Task EveryClusterBelowTheEndIsCountedOnceAndTheEngineWritesIt(int bits, int clusterSize, Qcow2Preallocation mode)
    {
        const long size = 3 << 20;
        var s = new MemoryStorage("w.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, RefcountBits = bits, Preallocation = mode });
        await AssertCountedOnceAsync(s, clusterSize);
        var header = await HeaderAsync(s);
        Assert.Equal((uint)System.Numerics.BitOperations.Log2((uint)bits), header.RefcountOrder);

        var data = new byte[size];
        new Random(bits).NextBytes(data);
        await using (var image = await Qcow2Image.OpenAsync(new Unclosed(s)))
        {
            await image.WriteAsync(0, data);
            await image.WriteZeroesAsync(clusterSize * 3L, clusterSize);
            Array.Clear(data, clusterSize * 3, clusterSize);
            await image.FlushAsync();
        }
        // (The refcounts after writing are qemu-img check's to judge: see the interop tests. A moved refcount table
        // leaves its old clusters free, so "every cluster counted once" no longer holds.)
        await using (var image = await Qcow2Image.OpenAsync(new Unclosed(s), new ImageOpenOptions { ReadOnly = true }))
        {
            var back = new byte[size];
            await image.ReadAsync(0, back);
            Assert.True(data.AsSpan().SequenceEqual(back), "data read back differs");
        }
    }

    [Theory]
    [InlineData(Qcow2Preallocation.Metadata)]
    [InlineData(Qcow2Preallocation.Falloc)]
    [InlineData(Qcow2Preallocation.Full)]
    public async Task PreallocationMapsEveryGuestClusterOnceAndReadsAsZeroes(Qcow2Preallocation mode)
    {
        const int cs = 4096;
        const long size = 5 << 20; // three L2 tables, the last one partly used
        var s = new MemoryStorage("p.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = size, ClusterSize = cs, Preallocation = mode });
        var header = await HeaderAsync(s);
        var l1 = await Qcow2Entries.ReadAsync(s, (long)header.L1TableOffset, (int)header.L1Size, default);
        var seen = new HashSet<ulong>();
        long mapped = 0;
        foreach (ulong l1e in l1)
        {
            Assert.NotEqual(0UL, l1e & Qcow2Entries.CopiedFlag);
            var l2 = await Qcow2Entries.ReadAsync(s, (long)(l1e & Qcow2Entries.OffsetMask), cs / 8, default);
            foreach (ulong e in l2.TakeWhile(e => e != 0))
            {
                Assert.Equal(Qcow2Entries.CopiedFlag, e & ~Qcow2Entries.OffsetMask); // a plain, allocated, unshared cluster
                Assert.True(seen.Add(e & Qcow2Entries.OffsetMask), "a host cluster is mapped twice");
                mapped++;
            }
        }
        Assert.Equal(size / cs, mapped);
        Assert.Equal(s.Length, (long)seen.Max() + cs); // the file ends with the last guest cluster
        await AssertCountedOnceAsync(s, cs);
        await using var image = await Qcow2Image.OpenAsync(new Unclosed(s), new ImageOpenOptions { ReadOnly = true });
        var back = new byte[size];
        back.AsSpan().Fill(0xff);
        await image.ReadAsync(0, back);
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    /// <summary>
    /// Where qemu-img 7.2 put the L2 tables and refcount blocks of preallocation=metadata images (read from the files
    /// it made): each L2 table then its clusters, a block right after the run that outgrew the last one.
    /// </summary>
    [Theory]
    [InlineData(65536, 16, 5L << 30, new long[] { 4, 8197, 16390, 24583, 32777 }, new long[] { 2, 32776, 65549 }, 81936)]
    [InlineData(65536, 64, 3L << 30, new long[] { 4, 8198, 16392, 24586, 32780, 40974 }, new long[] { 2, 8197, 16391, 24585, 32779, 40973 }, 49168)]
    [InlineData(4096, 16, 20L << 20, new long[] { 4, 517, 1030, 1543, 2057, 2570 }, new long[] { 2, 2056, 4109 }, 5136)]
    [InlineData(512, 1, 40L << 20, new long[] { 23, 88, 153, 218, 283, 348 }, new long[] { 2, 4118, 8214, 12310, 16406 }, 83243)]
    public void PreallocationPlacesTablesWhereQemuImgDoes(int clusterSize, int bits, long size, long[] l2Clusters, long[] blockClusters, long endCluster)
    {
        var layout = Qcow2Layout.Plan(new Qcow2CreateOptions { ClusterSize = clusterSize, RefcountBits = bits, Preallocation = Qcow2Preallocation.Metadata }, size);
        var placements = layout.Placements.ToList();
        var l2 = placements.Where(p => p.Kind == Qcow2PlacementKind.L2Table).Select(p => p.Cluster).Take(l2Clusters.Length);
        var blocks = new[] { layout.RefBlocksOffset / clusterSize }
            .Concat(placements.Where(p => p.Kind == Qcow2PlacementKind.RefcountBlock).Select(p => p.Cluster)).Take(blockClusters.Length);
        Assert.Equal(l2Clusters, l2);
        Assert.Equal(blockClusters, blocks);
        Assert.Equal(endCluster, layout.TotalClusters);
        Assert.Equal(3 * clusterSize, layout.L1Offset);
    }

    [Fact]
    public async Task LazyRefcountsSetsTheCompatibleBitAndNothingElse()
    {
        var s = new MemoryStorage("l.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 1 << 20, LazyRefcounts = true });
        var header = await HeaderAsync(s);
        Assert.Equal(Qcow2Header.LazyRefcountsBit, header.CompatibleFeatures);
        Assert.Equal(Qcow2IncompatibleFeatures.None, header.IncompatibleFeatures);
        // The writer keeps refcounts exact and never sets the dirty bit.
        await using (var image = await Qcow2Image.OpenAsync(new Unclosed(s)))
        {
            await image.WriteAsync(0, new byte[65536 * 2]);
            await image.FlushAsync();
            Assert.False(image.IsDirty);
        }
        Assert.Equal(Qcow2IncompatibleFeatures.None, (await HeaderAsync(s)).IncompatibleFeatures);
        await AssertCountedOnceAsync(s, 65536);
    }

    /// <summary>Two problems at once: qemu-img 7.2 names the first in its order (observed), and so does the layout.</summary>
    [Theory]
    [InlineData("Extended L2 entries are only supported with compatibility level 1.1", 2, 1000, 16, false, true, Qcow2Preallocation.Off, Qcow2CompressionType.Zlib)]
    [InlineData("Cluster size must be a power of two between 512 and 2048k", 2, 1000, 3, true, false, Qcow2Preallocation.Off, Qcow2CompressionType.Zstd)]
    [InlineData("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes", 3, 4096, 3, false, true, Qcow2Preallocation.Off, Qcow2CompressionType.Zlib)]
    [InlineData("Lazy refcounts only supported with compatibility level 1.1", 2, 65536, 3, true, false, Qcow2Preallocation.Off, Qcow2CompressionType.Zstd)]
    [InlineData("Refcount width must be a power of two and may not exceed 64 bits", 3, 65536, 3, false, false, Qcow2Preallocation.Off, Qcow2CompressionType.Zstd)]
    [InlineData("Different refcount widths than 16 bits require compatibility level 1.1", 2, 65536, 8, false, false, Qcow2Preallocation.Off, Qcow2CompressionType.Zstd)]
    [InlineData("Non-zlib compression type is only supported with compatibility level 1.1", 2, 65536, 16, false, false, Qcow2Preallocation.Off, Qcow2CompressionType.Zstd)]
    public void RefusesTheFirstProblemInQemuImgsOrder(string message, int version, int clusterSize, int bits, bool lazy, bool extendedL2,
        Qcow2Preallocation mode, Qcow2CompressionType compression)
    {
        var options = new Qcow2CreateOptions
        {
            Version = version, ClusterSize = clusterSize, RefcountBits = bits, LazyRefcounts = lazy, ExtendedL2 = extendedL2,
            Preallocation = mode, CompressionType = compression,
        };
        var e = Assert.Throws<ArgumentException>(() => Qcow2Layout.Plan(options, 1 << 20));
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void RefusesPreallocationWithABackingFileAndABackingFormatWithoutOne()
    {
        var e = Assert.Throws<ArgumentException>(() => Qcow2Layout.Plan(new Qcow2CreateOptions
        { BackingFile = "b.raw", BackingFormat = ImageFormat.Raw, Preallocation = Qcow2Preallocation.Metadata, LazyRefcounts = true, Version = 2 }, 1 << 20));
        Assert.Equal("Backing file and preallocation can only be used at the same time if extended_l2 is on", e.Message);
        e = Assert.Throws<ArgumentException>(() => Qcow2Layout.Plan(new Qcow2CreateOptions { BackingFormat = ImageFormat.Raw, RefcountBits = 3 }, 1 << 20));
        Assert.Equal("Backing format cannot be used without backing file", e.Message);
    }

    [Theory]
    [InlineData(true, Qcow2CompressionType.Zlib, "extended_l2=on is not supported")]
    [InlineData(false, Qcow2CompressionType.Zstd, "compression_type=zstd is not supported")]
    public async Task RefusesWhatItCouldNotOpenWritingNothing(bool extendedL2, Qcow2CompressionType compression, string message)
    {
        var s = new MemoryStorage("n.qcow2");
        await s.WriteAsync(0, new byte[] { 1, 2, 3 });
        var e = await Assert.ThrowsAsync<NotSupportedException>(() =>
            Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 1 << 20, ExtendedL2 = extendedL2, CompressionType = compression }));
        Assert.StartsWith(message, e.Message);
        Assert.Equal(3, s.Length);
    }

    private static async Task<Qcow2Header> HeaderAsync(IBlockStorage s)
    {
        var head = new byte[Qcow2Header.V3WrittenLength];
        await s.ReadAsync(0, head);
        var header = Qcow2Header.Parse(head);
        header.Validate(s.Length);
        return header;
    }

    /// <summary>Every cluster below the end of the file has refcount 1, every refcount entry beyond it 0, read through the engine's refcount reader.</summary>
    private static async Task AssertCountedOnceAsync(IBlockStorage s, int clusterSize)
    {
        var header = await HeaderAsync(s);
        var refcounts = await Qcow2Refcounts.LoadAsync(s, header, default);
        long clusters = (s.Length + clusterSize - 1) / clusterSize;
        for (long b = 0; b < refcounts.TableLength; b++)
        {
            long at = refcounts.BlockOffset(b, s.Length);
            if (at < 0)
            {
                Assert.True(b * refcounts.PerBlock >= clusters, $"no refcount block for clusters from {b * refcounts.PerBlock}");
                continue;
            }
            var block = await refcounts.LoadBlockAsync(b, at, default);
            for (long c = b * refcounts.PerBlock; c < (b + 1) * refcounts.PerBlock; c++)
                Assert.True((c < clusters ? 1UL : 0UL) == refcounts.Get(block, c), $"refcount of cluster {c} is {refcounts.Get(block, c)}");
        }
    }

    /// <summary>The memory image outlives each open (closing an image closes its storage).</summary>
    private sealed class Unclosed(IBlockStorage inner) : ForwardingStorage(inner)
    {
        public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
        public override void Dispose() { }
    }
}
