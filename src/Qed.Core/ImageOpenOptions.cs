using Qed.Storage;

namespace Qed;

/// <summary>How to open an image.</summary>
public sealed record ImageOpenOptions
{
    /// <summary>The format (<c>qed</c>, <c>raw</c>, <c>qcow2</c>), or null to probe the file.</summary>
    public string? Format { get; init; }

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

    /// <summary>The host cache mode of the image file (backing files are read-only and use write-back).</summary>
    public CacheMode Cache { get; init; } = CacheMode.WriteBack;
}
