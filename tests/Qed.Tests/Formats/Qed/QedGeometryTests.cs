using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class QedGeometryTests
{
    [Fact]
    public void IndexArithmeticFollowsClusterAndTableSize()
    {
        var g = new QedGeometry(EngineFixture.NewHeader());
        Assert.Equal(4096, g.ClusterSize);
        Assert.Equal(12, g.ClusterBits);
        Assert.Equal(8192, g.TableBytes);
        Assert.Equal(1024, g.EntriesPerTable);
        Assert.Equal(10, g.EntryBits);
        Assert.Equal(4L << 20, g.TableSpan);
        Assert.Equal(4096, g.HeaderBytes);
        Assert.Equal(1, g.HeaderClusters);

        long offset = (3L << 22) + 5 * 4096 + 17; // table 3, entry 5, byte 17
        Assert.Equal(3, g.L1IndexOf(offset));
        Assert.Equal(5, g.L2IndexOf(offset));
        Assert.Equal(17, g.InCluster(offset));
        Assert.Equal(offset - 17, g.RoundDown(offset));
        Assert.Equal(offset - 17 + 4096, g.RoundUp(offset));
        Assert.Equal(offset - 17, g.RoundUp(offset - 17));
        Assert.Equal(3 * 1024 + 5, g.ClusterOf(offset));
        Assert.Equal(offset - 17, g.OffsetOf(g.ClusterOf(offset)));
        Assert.Equal(4096 + 8 * 3, g.L1EntryFileOffset(3));
    }

    [Theory]
    [InlineData(65536u, 4u)]
    [InlineData(4096u, 16u)]
    [InlineData(1u << 20, 1u)]
    public void TheLastEntryOfATableEndsItsSpan(uint clusterSize, uint tableSize)
    {
        var header = EngineFixture.NewHeader() with { ClusterSize = clusterSize, TableSize = tableSize, L1TableOffset = clusterSize };
        var g = new QedGeometry(header);
        long lastByte = g.TableSpan - 1;
        Assert.Equal(0, g.L1IndexOf(lastByte));
        Assert.Equal(g.EntriesPerTable - 1, g.L2IndexOf(lastByte));
        Assert.Equal(1, g.L1IndexOf(g.TableSpan));
        Assert.Equal(0, g.L2IndexOf(g.TableSpan));
        Assert.Equal((long)clusterSize * tableSize / 8 * clusterSize, g.TableSpan);
    }

    [Fact]
    public void OverlapsL1CoversExactlyTheL1Clusters()
    {
        var g = new QedGeometry(EngineFixture.NewHeader()); // L1 at [4096, 12288)
        Assert.False(g.OverlapsL1(0, 4096));
        Assert.True(g.OverlapsL1(0, 4097));
        Assert.True(g.OverlapsL1(4096, 1));
        Assert.True(g.OverlapsL1(12287, 1));
        Assert.False(g.OverlapsL1(12288, 4096));
    }

    [Fact]
    public void TableOffsetRuleMatchesTheHeaders()
    {
        var header = EngineFixture.NewHeader() with { HeaderSize = 2, L1TableOffset = 8192 };
        var g = new QedGeometry(header);
        foreach (ulong offset in new ulong[] { 0, 1, 4096, 8192, 8193, 12288, 16384, 20480, 24576, ulong.MaxValue & ~4095UL })
            foreach (long fileClusters in new long[] { 0, 3, 5, 6, 7, long.MaxValue / 4096 })
                Assert.Equal(header.IsValidTableOffset(offset, fileClusters), g.IsValidTableOffset(offset, fileClusters));
    }
}
