using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>The create layout: header, refcount table, refcount blocks, L1, in that order; exactly the metadata
/// clusters counted, once each; bad options refused before anything is written.</summary>
public sealed class Qcow2LayoutTests
{
    [Theory]
    [InlineData(512, 64L << 20)]   // L1 of 2,048 entries: 32 clusters
    [InlineData(65536, 1L << 30)]
    [InlineData(512, 1L << 30)]    // L1 of 32,768 entries: 512 clusters, more than one refcount block counts them
    public async Task EveryMetadataClusterIsCountedOnceAndNothingElse(int clusterSize, long size)
    {
        var layout = Qcow2Layout.Plan(new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize }, size);
        Assert.True(layout.RefTableOffset == clusterSize && layout.RefBlocksOffset > layout.RefTableOffset && layout.L1Offset > layout.RefBlocksOffset);
        var s = new MemoryStorage("layout.qcow2");
        await Qcow2Layout.WriteAsync(s, layout, default);
        var head = new byte[Qcow2Header.V3WrittenLength];
        await s.ReadAsync(0, head);
        var header = Qcow2Header.Parse(head);
        header.Validate(s.Length);
        var refcounts = await Qcow2Refcounts.LoadAsync(s, header, default);
        long clusters = (s.Length + clusterSize - 1) / clusterSize;
        Assert.Equal(layout.MetadataClusters, clusters);
        for (long b = 0; b * refcounts.PerBlock < clusters + refcounts.PerBlock; b++)
        {
            long at = refcounts.BlockOffset(b, s.Length);
            if (at < 0) { Assert.True(b * refcounts.PerBlock >= clusters); continue; }
            var block = await refcounts.LoadBlockAsync(b, at, default);
            for (long c = b * refcounts.PerBlock; c < (b + 1) * refcounts.PerBlock; c++)
                Assert.Equal(c < clusters ? 1UL : 0UL, refcounts.Get(block, c));
        }
    }

    [Theory]
    [InlineData(1000, 3, "Cluster size must be a power of two")]
    [InlineData(65536, 4, "qcow2 version must be 2")]
    public void BadOptionsAreRefusedNamingThem(int clusterSize, int version, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => Qcow2Layout.Plan(new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = clusterSize, Version = version }, 1 << 20));
        Assert.StartsWith(message, e.Message);
    }
}
