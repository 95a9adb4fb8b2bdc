using System.Collections.Concurrent;

namespace Qed.Formats.Qed;

/// <summary>
/// Decides whether a table entry may be followed, and raises the corruption when it may not: an L1 entry must name a
/// cluster-aligned table past the header, inside the file, clear of the L1 table and of every other L2 table; an L2
/// entry is unallocated (0), a zero cluster (1), or a cluster-aligned data offset inside the file that is not in the
/// header, the L1 table or any L2 table.
/// </summary>
/// <remarks>
/// Owns the index of every cluster of every L2 table (cluster index -> L1 index) and the set of tables that overlap
/// an earlier one or L1 at open. Invariants: a table's clusters are indexed before any entry can name them as data
/// (a new table is indexed when it is reserved, under the allocation's lock; a moved table at its new home before
/// its old clusters leave the index); an overlapping table is never indexed, never loaded, and the first claim keeps
/// the clusters, as the check counts them. The index is a concurrent dictionary: lookups take no lock. Every refusal
/// is recorded in the <see cref="FailureLatch"/>, so writes stop until a check. The offset rules themselves
/// (<see cref="TableOffsetProblem"/>, <see cref="DataOffsetProblem"/>) are static and the check calls them too, so a
/// rule cannot differ between open and check.
/// </remarks>
internal sealed class EntryValidator(QedGeometry geometry, ClusterAllocator allocator, FailureLatch latch)
{
    /// <summary>The L2 entry of a zero cluster.</summary>
    public const ulong ZeroClusterEntry = 1;

    private readonly QedGeometry _g = geometry;
    private readonly ConcurrentDictionary<long, int> _tableClusters = new();
    private readonly HashSet<int> _overlappingTables = new(); // filled at open only, read-only after

    /// <summary>
    /// Indexes the L2 tables named by L1 at open. A table overlapping the L1 table or a table of a lower L1 index is
    /// recorded as overlapping, as the check counts it: the first claim keeps the clusters.
    /// </summary>
    public void IndexTables(L1Table l1)
    {
        long fileEnd = allocator.FileEnd;
        for (int i = 0; i < l1.Length; i++)
        {
            ulong offset = l1[i];
            if (offset == 0 || TableOffsetProblem(_g, offset, fileEnd) != OffsetProblem.None) continue;
            long first = (long)(offset >> _g.ClusterBits);
            bool overlaps = _g.OverlapsL1(offset, _g.TableBytes);
            for (long c = first; c < first + _g.TableClusters && !overlaps; c++) overlaps = _tableClusters.ContainsKey(c);
            if (overlaps) { _overlappingTables.Add(i); continue; }
            for (long c = first; c < first + _g.TableClusters; c++) _tableClusters[c] = i;
        }
    }

    /// <summary>Records the clusters of a table at <paramref name="offset"/> (a new table, or a moved one's new home).</summary>
    public void AddTable(int l1Index, long offset)
    {
        for (long c = offset >> _g.ClusterBits; c < (offset + _g.TableBytes) >> _g.ClusterBits; c++) _tableClusters[c] = l1Index;
    }

    /// <summary>Forgets the clusters of a table at <paramref name="offset"/> (moved away or unlinked).</summary>
    public void RemoveTable(long offset)
    {
        for (long c = offset >> _g.ClusterBits; c < (offset + _g.TableBytes) >> _g.ClusterBits; c++) _tableClusters.TryRemove(c, out _);
    }

    /// <summary>Whether cluster index <paramref name="cluster"/> belongs to an indexed L2 table.</summary>
    public bool IsTableCluster(long cluster) => _tableClusters.ContainsKey(cluster);

    /// <summary>Why an offset named by a table entry cannot be followed, by the first rule it breaks (in this order).</summary>
    public enum OffsetProblem
    {
        /// <summary>The offset may be followed (as far as these rules go).</summary>
        None,
        /// <summary>Not a multiple of the cluster size.</summary>
        NotAligned,
        /// <summary>Aligned, but inside the header area.</summary>
        InHeader,
        /// <summary>Aligned, past the header, and at or past the end of the file's last whole cluster: what an entry
        /// written ahead of a file extension that a crash lost looks like (zeroing it orphans nothing in the file).</summary>
        PastEnd,
        /// <summary>A table that starts inside the file but whose last clusters lie past its end.</summary>
        CrossesEnd,
    }

    /// <summary>
    /// The rule for the offset an L1 entry names, shared by the open (<see cref="CheckTable"/>, <see cref="IndexTables"/>)
    /// and the check: valid as <see cref="QedGeometry.IsValidTableOffset"/> in a file whose last whole cluster ends at
    /// <paramref name="fileEnd"/>, and otherwise the first rule it breaks. Overlaps (with L1 or other tables) are the
    /// caller's: the open and the check count them differently.
    /// </summary>
    public static OffsetProblem TableOffsetProblem(in QedGeometry g, ulong offset, long fileEnd)
    {
        long fileClusters = fileEnd >> g.ClusterBits;
        if (g.IsValidTableOffset(offset, fileClusters)) return OffsetProblem.None;
        if ((offset & (ulong)(g.ClusterSize - 1)) != 0) return OffsetProblem.NotAligned;
        ulong cluster = offset >> g.ClusterBits;
        if (cluster < (ulong)g.HeaderClusters) return OffsetProblem.InHeader;
        return cluster >= (ulong)fileClusters ? OffsetProblem.PastEnd : OffsetProblem.CrossesEnd;
    }

    /// <summary>
    /// The rule for a data offset an L2 entry names (an entry other than 0 and 1), shared by <see cref="Classify"/> and
    /// the check: cluster aligned, past the header, and below <paramref name="fileEnd"/>, the end of the file's last whole
    /// cluster (aligned, so the whole cluster then lies inside the file: no overflowing sum). Whether it lies in the L1
    /// table or an L2 table is the caller's: the open refuses it, the check counts it as a cluster used twice.
    /// </summary>
    public static OffsetProblem DataOffsetProblem(in QedGeometry g, ulong entry, long fileEnd) =>
        (entry & (ulong)(g.ClusterSize - 1)) != 0 ? OffsetProblem.NotAligned :
        entry < (ulong)g.HeaderBytes ? OffsetProblem.InHeader :
        entry >= (ulong)fileEnd ? OffsetProblem.PastEnd :
        OffsetProblem.None;

    /// <summary>Throws (and latches) unless L1 entry <paramref name="l1Index"/>'s table at <paramref name="offset"/> may be loaded.</summary>
    public void CheckTable(int l1Index, ulong offset)
    {
        long at = _g.L1EntryFileOffset(l1Index);
        if (TableOffsetProblem(_g, offset, allocator.FileEnd) != OffsetProblem.None || _g.OverlapsL1(offset, _g.TableBytes))
            throw latch.Corrupt($"QED L1 entry {l1Index} (file offset 0x{at:x}) is an invalid table offset 0x{offset:x}", $"L1[{l1Index}]", at);
        if (_overlappingTables.Contains(l1Index))
            throw latch.Corrupt($"QED L1 entry {l1Index} (file offset 0x{at:x}) names the table 0x{offset:x}, which overlaps another L2 table",
                $"L1[{l1Index}]", at);
    }

    /// <summary>Says what an L2 entry means, throwing (and latching) if it is a data offset that cannot be followed safely.</summary>
    public ExtentKind Classify(L2Table table, int index, ulong entry)
    {
        if (entry == 0) return ExtentKind.Unallocated;
        if (entry == ZeroClusterEntry) return ExtentKind.Zero;
        string? problem = DataOffsetProblem(_g, entry, allocator.FileEnd) switch
        {
            OffsetProblem.NotAligned => "not cluster aligned",
            OffsetProblem.InHeader => "inside the header",
            OffsetProblem.PastEnd => "past the end of the file",
            _ => _g.OverlapsL1(entry, _g.ClusterSize) ? "inside the L1 table" :
                _tableClusters.ContainsKey((long)(entry >> _g.ClusterBits)) ? "inside an L2 table" :
                null,
        };
        if (problem == null) return ExtentKind.Data;
        long at = (long)table.FileOffset + 8L * index;
        throw latch.Corrupt($"QED L2 table {table.L1Index} entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, {problem}",
            $"L2[{table.L1Index}][{index}]", at);
    }
}
