namespace Qed.Formats.Qcow2;

/// <summary>Options for creating a qcow2 image, with qemu-img's defaults.</summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>The guest size in bytes (rounded up to 512); null to take the backing file's size.</summary>
    public long? Size { get; init; }

    /// <summary>Bytes per cluster: a power of 2 from 512 to 2 MiB. Default 64 KiB.</summary>
    public int ClusterSize { get; init; } = 65536;

    /// <summary>2 (qemu-img's <c>compat=0.10</c>) or 3 (<c>compat=1.1</c>, the default: zero clusters).</summary>
    public int Version { get; init; } = 3;

    /// <summary>The backing file name to store, absolute or relative to the new image's folder.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing file's format, recorded in a header extension; null leaves it to be probed at open.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>Do not open the backing file (qemu-img create -u); <see cref="Size"/> must then be given.</summary>
    public bool Unsafe { get; init; }
}
