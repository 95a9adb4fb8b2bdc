using System.Collections.ObjectModel;

namespace Qed.Check;

/// <summary>
/// What a consistency check (<see cref="ImageFile.CheckAsync(string, CheckOptions?, IProgress{ImageProgress}?, CancellationToken)"/>)
/// found, with qemu-img check's counters and meanings. Callers read it; only the check fills it in, so an instance
/// never changes once returned and may be shared between threads.
/// </summary>
public sealed class ImageCheckResult
{
    private readonly List<string> _messages = new();

    internal ImageCheckResult() => Messages = new ReadOnlyCollection<string>(_messages);

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
    /// <summary>The format checked: <see cref="ImageFormat.Qed"/> or <see cref="ImageFormat.Qcow2"/>.</summary>
    public ImageFormat Format { get; internal set; } = ImageFormat.Qed;
    /// <summary>Why the check stopped before it finished (qemu-img's "Check failed: ..."), or null when it finished.</summary>
    public string? Failure { get; internal set; }
    /// <summary>One line per problem found or repaired, for people.</summary>
    public IReadOnlyList<string> Messages { get; }

    /// <summary>Whether the image is clean: it finished, with no corruptions, leaks or check errors left.</summary>
    public bool IsClean => Failure is null && Corruptions == 0 && Leaks == 0 && CheckErrors == 0;

    /// <summary>The messages, for the check to fill in.</summary>
    internal List<string> MessageList => _messages;
}
