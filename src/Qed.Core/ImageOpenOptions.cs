using Qed.Storage;

namespace Qed;

/// <summary>How to open an image.</summary>
public sealed record ImageOpenOptions
{
    /// <summary>
    /// The format, or null to probe the file (as QEMU does: by magic, else raw; a probed raw image refuses writes that
    /// would make it look like another format, see <see cref="Formats.Raw.RawImage.IsProbed"/>).
    /// </summary>
    public ImageFormat? Format { get; init; }

    /// <summary>Open read-only. Backing files are always read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Do not open the backing chain (for info and rebase -u on images whose backing file is gone).</summary>
    public bool NoBacking { get; init; }

    /// <summary>
    /// A backing file (by path, compared after resolving links) to open read-write rather than read-only: the base of
    /// a commit. Every other backing layer stays read-only.
    /// </summary>
    public string? WritableBacking { get; init; }

    /// <summary>Skip the automatic check and repair of an image whose NEED_CHECK bit is set (for <c>check</c> itself).</summary>
    public bool SkipAutomaticCheck { get; init; }

    /// <summary>
    /// Memory for cached L2 tables, in bytes (default 64 MiB: with 64 KiB clusters, 256 tables mapping 512 GiB).
    /// Least recently used tables are dropped beyond it; a table with unwritten changes is kept until written.
    /// </summary>
    public long L2CacheBytes { get; init; } = 64L << 20;

    /// <summary>
    /// Reads up to this many bytes are first tried from the host page cache on the calling thread (no thread-pool
    /// hop when the data is cached); larger ones, and data not cached, go to the thread pool. The default, 128 KiB,
    /// suits callers that keep several large reads in flight from one thread (convert), which would otherwise run
    /// one after another. A server that reads one request at a time per connection gains from a larger limit.
    /// Applies to the whole backing chain.
    /// </summary>
    public long InlineReadLimit { get; init; } = FileStorage.DefaultInlineReadLimit;

    /// <summary>
    /// Take QEMU's image locks on every file of the chain (default on), so that this open and QEMU's tools (qemu-img,
    /// qemu-io, qemu-nbd, a running VM) and other opens of qed exclude each other as QEMU's tools do: a writer is
    /// refused beside any other opener, a reader beside a writer. Turn off only where another mechanism keeps
    /// writers apart; then nothing stops two writers corrupting the image.
    /// </summary>
    public bool Locking { get; init; } = true;

    /// <summary>
    /// Share the image with writers (qemu-img's <c>-U</c>, <c>force-share=on</c>): the open takes no lock that stops
    /// another opener, and works beside a running writer, whose changes it may see half made. Read-only opens only
    /// (an <see cref="ArgumentException"/> otherwise). Applies to the backing chain too.
    /// </summary>
    public bool ForceShare { get; init; }

    /// <summary>The host cache mode of the image file (backing files are read-only and use write-back).</summary>
    public CacheMode Cache { get; init; } = CacheMode.WriteBack;
}
