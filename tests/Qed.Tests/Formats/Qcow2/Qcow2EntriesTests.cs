using Qed.Formats.Qcow2;
using Qed.Storage;
using static Qed.Formats.Qcow2.Qcow2Entries;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>The entry codec: big-endian tables round-trip, and each validation rule refuses exactly its case.</summary>
public sealed class Qcow2EntriesTests
{
    private const int Bits = 16; // 64 KiB clusters
    private const long Cluster = 1L << Bits;
    private const long End = 100 * Cluster;

    [Fact]
    public async Task TablesAreBigEndianAndRoundTrip()
    {
        ulong[] entries = [0x0102030405060708, 0, CopiedFlag | 0x30000, ulong.MaxValue];
        var bytes = Encode(entries, 0, entries.Length);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, bytes[..8]);
        var s = new MemoryStorage();
        await s.WriteAsync(4096, bytes);
        Assert.Equal(entries, await ReadAsync(s, 4096, entries.Length, default));
        Assert.Equal(entries[1..3], Decode(Encode(entries, 1, 2)));
    }

    [Theory]
    [InlineData(0x30000UL | CopiedFlag, null)]
    [InlineData(0x30000UL | 1, "has reserved bits set")]
    [InlineData(0x30200UL, "is not cluster aligned")]
    [InlineData(CopiedFlag, "points into the header")]
    [InlineData(100UL << 16, "points past the end of the file")]
    public void L1EntriesAreValidated(ulong entry, string? problem) => Assert.Equal(problem, L1Problem(entry, (int)Cluster, End));

    [Theory]
    [InlineData(0x20000UL, null)]
    [InlineData(0x20001UL, "has reserved bits set")]
    [InlineData(0x20200UL, "is not cluster aligned")]
    [InlineData(0UL, "points into the header")]
    [InlineData(200UL << 16, "points past the end of the file")]
    public void RefcountTableEntriesAreValidated(ulong entry, string? problem) => Assert.Equal(problem, RefTableProblem(entry, (int)Cluster, End));

    [Theory]
    [InlineData(0UL, true, (int)Qcow2ClusterKind.Unallocated, -1L, null)]
    [InlineData(0x50000UL | CopiedFlag, true, (int)Qcow2ClusterKind.Data, 0x50000L, null)]
    [InlineData(0x50000UL, false, (int)Qcow2ClusterKind.Data, 0x50000L, null)]
    [InlineData(ZeroFlag, true, (int)Qcow2ClusterKind.Zero, -1L, null)]
    [InlineData(0x50000UL | ZeroFlag | CopiedFlag, true, (int)Qcow2ClusterKind.Zero, 0x50000L, null)]
    [InlineData(ZeroFlag, false, (int)Qcow2ClusterKind.Zero, -1L, "is a zero cluster, which version 2 does not have")]
    [InlineData(0x50002UL, true, (int)Qcow2ClusterKind.Data, 0x50000L, "has reserved bits set")]
    [InlineData(0x50000UL | 1UL << 56, true, (int)Qcow2ClusterKind.Data, 0x50000L, "has reserved bits set")]
    [InlineData(0x50200UL, true, (int)Qcow2ClusterKind.Data, 0x50200L, "is not cluster aligned")]
    [InlineData(200UL << 16, true, (int)Qcow2ClusterKind.Data, 200L << 16, "points past the end of the file")]
    [InlineData(CopiedFlag, true, (int)Qcow2ClusterKind.Unallocated, -1L, "has offset 0 with the copied flag (only valid with an external data file)")]
    public void L2EntriesAreClassifiedAndValidated(ulong entry, bool v3, int kind, long host, string? problem)
    {
        Assert.Equal(problem, ClassifyL2(entry, Bits, v3, End, out var k, out long h));
        if (problem == null)
        {
            Assert.Equal((Qcow2ClusterKind)kind, k);
            Assert.Equal(host, h);
        }
    }

    [Fact]
    public void CompressedEntriesGiveTheirByteRange()
    {
        // 64 KiB clusters: x = 62 - 8 = 54; the sector count (minus one) sits in bits 54-61.
        ulong entry = CompressedFlag | 3UL << 54 | 0x50100;
        Assert.Null(ClassifyL2(entry, Bits, true, End, out var kind, out long host));
        Assert.Equal(Qcow2ClusterKind.Compressed, kind);
        Assert.Equal(0x50100, host);
        Assert.Equal((0x50100L, 4 * 512 - 0x100), CompressedExtent(entry, Bits));
        Assert.Equal((0x50100L, 4L * 512 - 0x100), HeldRange(entry, Bits));
        Assert.Equal("is compressed but marked as copied", ClassifyL2(entry | CopiedFlag, Bits, true, End, out _, out _));
        Assert.Equal("points into the header", ClassifyL2(CompressedFlag | 0x100, Bits, true, End, out _, out _));
        Assert.Equal("points past the end of the file", ClassifyL2(CompressedFlag | (ulong)End, Bits, true, End, out _, out _));
    }

    [Fact]
    public void HeldRangeOfStandardEntries()
    {
        Assert.Equal((0x50000L, Cluster), HeldRange(0x50000UL | CopiedFlag, Bits));
        Assert.Equal((0x50000L, Cluster), HeldRange(0x50000UL | CopiedFlag | ZeroFlag, Bits)); // a preallocated zero cluster holds space
        Assert.Equal((0L, 0L), HeldRange(ZeroFlag, Bits));
        Assert.Equal((0L, 0L), HeldRange(0, Bits));
    }
}
