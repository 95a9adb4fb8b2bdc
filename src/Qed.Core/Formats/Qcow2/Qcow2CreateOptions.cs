namespace Qed.Formats.Qcow2;

/// <summary>What a new qcow2 image allocates up front (qemu-img's <c>preallocation</c> option).</summary>
public enum Qcow2Preallocation
{
    /// <summary>Nothing beyond the header, refcount structures and L1 table (<c>off</c>, the default).</summary>
    Off,
    /// <summary>Every L2 table and every guest cluster's host cluster, left sparse in the file (<c>metadata</c>).</summary>
    Metadata,
    /// <summary>As <see cref="Metadata"/>, with the guest clusters' space reserved by fallocate (<c>falloc</c>).</summary>
    Falloc,
    /// <summary>As <see cref="Metadata"/>, with the guest clusters written as zeroes (<c>full</c>).</summary>
    Full,
}

/// <summary>The algorithm a qcow2 image names for its compressed clusters (qemu-img's <c>compression_type</c>).</summary>
public enum Qcow2CompressionType
{
    /// <summary>Deflate (zlib), the default and the only one this library reads.</summary>
    Zlib,
    /// <summary>Zstandard: accepted by qemu-img for version 3 images; refused here, as images using it cannot be opened.</summary>
    Zstd,
}

/// <summary>Options for creating a qcow2 image, with qemu-img's defaults.</summary>
/// <remarks>
/// <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/> validates them in qemu-img 7.2's
/// order and with its messages, so the first problem reported is the one qemu-img reports. Two options qemu-img accepts
/// are refused with <see cref="NotSupportedException"/> after that validation, because this library cannot open the
/// images they make: <see cref="ExtendedL2"/> and <see cref="Qcow2CompressionType.Zstd"/>.
/// </remarks>
public sealed record Qcow2CreateOptions : ImageCreateOptions
{
    /// <summary>Options with qemu-img's qcow2 defaults.</summary>
    public Qcow2CreateOptions()
    {
    }

    /// <summary>The shared options of <paramref name="common"/>, with the qcow2 defaults for the rest.</summary>
    internal Qcow2CreateOptions(ImageCreateOptions common) : base(common)
    {
    }

    /// <summary>The cluster size when <see cref="ImageCreateOptions.ClusterSize"/> is null: 64 KiB.</summary>
    internal const int DefaultClusterSize = 65536;

    /// <summary>2 (qemu-img's <c>compat=0.10</c>) or 3 (<c>compat=1.1</c>, the default: zero clusters).</summary>
    public int Version { get; init; } = 3;

    /// <summary>
    /// Refcount width in bits: a power of two from 1 to 64 (qemu-img's <c>refcount_bits</c>); widths other than 16
    /// need version 3. Default 16.
    /// </summary>
    public int RefcountBits { get; init; } = 16;

    /// <summary>
    /// Sets the lazy refcounts compatible feature bit (qemu-img's <c>lazy_refcounts=on</c>; version 3 only). The bit
    /// permits a writer to defer refcount updates; this library's writer keeps refcounts exact anyway and never sets
    /// the dirty bit, so the image stays clean for <c>qemu-img check</c>.
    /// </summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>What to allocate up front. Anything but <see cref="Qcow2Preallocation.Off"/> is refused with a backing file, as qemu-img refuses it.</summary>
    public Qcow2Preallocation Preallocation { get; init; }

    /// <summary>Extended L2 entries (subclusters; qemu-img's <c>extended_l2=on</c>). Validated as qemu-img does, then refused.</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>The compression type to name in the header. <see cref="Qcow2CompressionType.Zstd"/> is validated as qemu-img does, then refused.</summary>
    public Qcow2CompressionType CompressionType { get; init; }
}
