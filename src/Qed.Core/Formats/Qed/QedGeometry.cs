using System.Numerics;
using Qed.Formats.Qed;

namespace Qed.Formats.Qed;

/// <summary>
/// The arithmetic of one image's table geometry, fixed at open: which L1 and L2 entry maps a guest offset, how many
/// guest bytes one L2 table spans, where the L1 table and its entries lie in the file, and how far the header area
/// reaches.
/// </summary>
/// <remarks>
/// Invariants: the cluster size is a power of two in [4 KiB, 64 MiB] and the table size a power of two in [1, 16]
/// (the header was validated before this is built), so every size here is a power of two and every index a shift and
/// a mask. A readonly struct held in readonly fields: the hot paths pay no indirection for it.
/// </remarks>
internal readonly struct QedGeometry
{
    /// <summary>Builds the geometry of a validated header.</summary>
    public QedGeometry(QedHeader header)
    {
        ClusterSize = (int)header.ClusterSize;
        ClusterBits = BitOperations.Log2(header.ClusterSize);
        TableClusters = (int)header.TableSize;
        TableBytes = (int)(header.ClusterSize * header.TableSize);
        EntriesPerTable = TableBytes / 8;
        EntryBits = BitOperations.Log2((uint)EntriesPerTable);
        HeaderClusters = header.HeaderSize;
        HeaderBytes = (long)header.HeaderSize * header.ClusterSize;
        L1Offset = (long)header.L1TableOffset;
    }

    /// <summary>Bytes per cluster.</summary>
    public readonly int ClusterSize;
    /// <summary>log2 of <see cref="ClusterSize"/>.</summary>
    public readonly int ClusterBits;
    /// <summary>Clusters per L1 or L2 table.</summary>
    public readonly int TableClusters;
    /// <summary>Bytes per L1 or L2 table.</summary>
    public readonly int TableBytes;
    /// <summary>u64 entries per table.</summary>
    public readonly int EntriesPerTable;
    /// <summary>log2 of <see cref="EntriesPerTable"/>.</summary>
    public readonly int EntryBits;
    /// <summary>Clusters of the header area.</summary>
    public readonly long HeaderClusters;
    /// <summary>Bytes of the header area: no table or data cluster starts below it.</summary>
    public readonly long HeaderBytes;
    /// <summary>File offset of the L1 table.</summary>
    public readonly long L1Offset;

    /// <summary>Guest bytes one L2 table maps.</summary>
    public long TableSpan => 1L << (ClusterBits + EntryBits);

    /// <summary>The L1 index of the table mapping guest <paramref name="offset"/>.</summary>
    public int L1IndexOf(long offset) => (int)(offset >> (ClusterBits + EntryBits));

    /// <summary>The L2 index, within its table, of the entry mapping guest <paramref name="offset"/>.</summary>
    public int L2IndexOf(long offset) => (int)((offset >> ClusterBits) & (EntriesPerTable - 1));

    /// <summary>The cluster index of a guest or file offset.</summary>
    public long ClusterOf(long offset) => offset >> ClusterBits;

    /// <summary>The byte offset of cluster index <paramref name="cluster"/>.</summary>
    public long OffsetOf(long cluster) => cluster << ClusterBits;

    /// <summary>Bytes of <paramref name="offset"/> past the start of its cluster.</summary>
    public long InCluster(long offset) => offset & (ClusterSize - 1);

    /// <summary><paramref name="offset"/> rounded up to a cluster boundary.</summary>
    public long RoundUp(long offset) => (offset + ClusterSize - 1) & ~(long)(ClusterSize - 1);

    /// <summary><paramref name="offset"/> rounded down to a cluster boundary.</summary>
    public long RoundDown(long offset) => offset & ~(long)(ClusterSize - 1);

    /// <summary>The file offset of L1 entry <paramref name="l1Index"/>.</summary>
    public long L1EntryFileOffset(int l1Index) => L1Offset + 8L * l1Index;

    /// <summary>Whether [offset, offset+length) overlaps the L1 table.</summary>
    public bool OverlapsL1(ulong offset, long length) =>
        offset < (ulong)L1Offset + (ulong)TableBytes && offset + (ulong)length > (ulong)L1Offset;

    /// <summary>
    /// Whether a table may start at <paramref name="offset"/>: cluster aligned, past the header area, and with all its
    /// clusters inside a file of <paramref name="fileClusters"/> whole clusters (as <see cref="QedHeader.IsValidTableOffset"/>).
    /// </summary>
    public bool IsValidTableOffset(ulong offset, long fileClusters)
    {
        if ((offset & (ulong)(ClusterSize - 1)) != 0) return false;
        ulong cluster = offset >> ClusterBits;
        return cluster >= (ulong)HeaderClusters && cluster + (ulong)TableClusters <= (ulong)fileClusters;
    }
}
