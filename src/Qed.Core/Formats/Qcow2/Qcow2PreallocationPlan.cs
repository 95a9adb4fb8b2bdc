namespace Qed.Formats.Qcow2;

/// <summary>What one placement of a preallocated image puts at its cluster.</summary>
internal enum Qcow2PlacementKind
{
    /// <summary>An L2 table; <see cref="Qcow2Placement.Index"/> is its L1 index.</summary>
    L2Table,
    /// <summary>A run of guest clusters mapped by the L2 table placed just before; <see cref="Qcow2Placement.Index"/> is the first guest cluster.</summary>
    Data,
    /// <summary>A refcount block; <see cref="Qcow2Placement.Index"/> is its refcount table index.</summary>
    RefcountBlock,
}

/// <summary>Clusters [<see cref="Cluster"/>, +<see cref="Count"/>) hold <see cref="Kind"/>.</summary>
internal readonly record struct Qcow2Placement(Qcow2PlacementKind Kind, long Cluster, long Count, long Index);

/// <summary>
/// Where a preallocated image (<c>preallocation=metadata|falloc|full</c>) puts everything after its L1 table, in file
/// order, as qemu-img 7.2 lays it out (observed with <c>qemu-img map</c> and the tables it writes): for each L1 entry
/// its L2 table, then the guest clusters it maps; whenever the clusters used so far reach past the last refcount
/// block, the next block goes right after them (so it counts itself). Every cluster below the end is used once.
/// </summary>
/// <remarks>
/// The only difference from qemu-img: its refcount table starts at one cluster and moves to the end of the file when
/// it fills; here it is sized up front by the caller, so an image needing a table of more than one cluster (small
/// clusters and a large size) ends a few clusters apart from qemu-img's. qemu-img check counts the same allocation.
/// </remarks>
internal static class Qcow2PreallocationPlan
{
    /// <summary>
    /// The placements after the L1 table, which ends at cluster <paramref name="firstFree"/>; the refcount blocks made
    /// with the image cover clusters below <paramref name="covered"/> (a multiple of <paramref name="perBlock"/>).
    /// </summary>
    public static IEnumerable<Qcow2Placement> Place(long firstFree, long covered, long perBlock, long l1Entries, long l2Entries, long guestClusters)
    {
        long next = firstFree;
        long blocks = covered / perBlock;
        for (long i = 0; i < l1Entries; i++)
        {
            yield return new Qcow2Placement(Qcow2PlacementKind.L2Table, next, 1, i);
            next++;
            while (next > blocks * perBlock)
            {
                yield return new Qcow2Placement(Qcow2PlacementKind.RefcountBlock, next, 1, blocks);
                next++;
                blocks++;
            }
            long data = Math.Min(l2Entries, guestClusters - i * l2Entries);
            if (data <= 0) continue;
            yield return new Qcow2Placement(Qcow2PlacementKind.Data, next, data, i * l2Entries);
            next += data;
            while (next > blocks * perBlock)
            {
                yield return new Qcow2Placement(Qcow2PlacementKind.RefcountBlock, next, 1, blocks);
                next++;
                blocks++;
            }
        }
    }

    /// <summary>The clusters the file ends at and the refcount blocks it needs in all, for <see cref="Place"/>'s arguments.</summary>
    public static (long EndCluster, long Blocks) Measure(long firstFree, long covered, long perBlock, long l1Entries, long l2Entries, long guestClusters)
    {
        long end = firstFree, blocks = covered / perBlock;
        foreach (var p in Place(firstFree, covered, perBlock, l1Entries, l2Entries, guestClusters))
        {
            end = p.Cluster + p.Count;
            if (p.Kind == Qcow2PlacementKind.RefcountBlock) blocks = p.Index + 1;
        }
        return (end, blocks);
    }
}
