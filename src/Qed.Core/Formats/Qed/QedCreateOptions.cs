namespace Qed.Formats.Qed;

/// <summary>Options for creating a QED image, with qemu-img's defaults: <see cref="ImageCreateOptions"/> and the QED table size.</summary>
public sealed record QedCreateOptions : ImageCreateOptions
{
    /// <summary>Options with the QED defaults.</summary>
    public QedCreateOptions()
    {
    }

    /// <summary>The shared options of <paramref name="common"/>, with the QED defaults for the rest.</summary>
    internal QedCreateOptions(ImageCreateOptions common) : base(common)
    {
    }

    /// <summary>The cluster size when <see cref="ImageCreateOptions.ClusterSize"/> is null: 64 KiB.</summary>
    internal const int DefaultClusterSize = 65536;

    /// <summary>Clusters per table: a power of 2 from 2 to 16 (1 is refused: QEMU cannot open it). Default 4.</summary>
    public int TableSize { get; init; } = 4;
}
