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
    /// <summary>Compressed clusters among the allocated ones (qcow2; always 0 for QED).</summary>
    public long CompressedClusters { get; internal set; }
    /// <summary>The end of the last cluster in use, in bytes (qcow2's "Image end offset"), or 0 when not reported.</summary>
    public long ImageEndOffset { get; internal set; }
    /// <summary>The format checked: "qed" or "qcow2".</summary>
    public string Format { get; internal set; } = "qed";
    /// <summary>Why the check stopped before it finished (qemu-img's "Check failed: ..."), or null when it finished.</summary>
    public string? Failure { get; internal set; }
    /// <summary>One line per problem found or repaired, for people.</summary>
    public List<string> Messages { get; } = new();
}
