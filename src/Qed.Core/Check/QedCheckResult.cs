namespace Qed.Check;

/// <summary>What a consistency check found, with qemu-img check's counters and meanings.</summary>
public sealed class QedCheckResult
{
    /// <summary>Clusters the guest can address: ceil(image_size / cluster_size).</summary>
    public long TotalClusters { get; internal set; }
    /// <summary>L2 entries that point at a data cluster (invalid ones included, as qemu-img counts).</summary>
    public long AllocatedClusters { get; internal set; }
    /// <summary>Data clusters not directly after the previous one of the same table.</summary>
    public long FragmentedClusters { get; internal set; }
    /// <summary>Problems left in the image that may lose or mix data.</summary>
    public long Corruptions { get; internal set; }
    /// <summary>Problems repaired by this run.</summary>
    public long CorruptionsFixed { get; internal set; }
    /// <summary>Clusters after the header that nothing references.</summary>
    public long Leaks { get; internal set; }
    /// <summary>Leaked clusters reclaimed by this run.</summary>
    public long LeaksFixed { get; internal set; }
    /// <summary>I/O errors that kept the check from looking at something.</summary>
    public long CheckErrors { get; internal set; }
    /// <summary>One line per problem found or repaired, for people.</summary>
    public List<string> Messages { get; } = new();
}
