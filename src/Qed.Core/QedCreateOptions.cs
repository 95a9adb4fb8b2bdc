namespace Qed;

/// <summary>Options for creating a QED image, with qemu-img's defaults.</summary>
public sealed record QedCreateOptions
{
    /// <summary>The guest size in bytes (rounded up to 512); null to take the backing file's size.</summary>
    public long? Size { get; init; }

    /// <summary>Bytes per cluster: a power of 2 from 4 KiB to 64 MiB. Default 64 KiB.</summary>
    public uint ClusterSize { get; init; } = 65536;

    /// <summary>Clusters per table: a power of 2 from 2 to 16 (1 is refused: QEMU cannot open it). Default 4.</summary>
    public uint TableSize { get; init; } = 4;

    /// <summary>The backing file name to store, absolute or relative to the new image's folder.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing file's format: "raw" is recorded (BACKING_FORMAT_NO_PROBE); others are probed at open.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>Do not open the backing file (qemu-img create -u); <see cref="Size"/> must then be given.</summary>
    public bool Unsafe { get; init; }
}
