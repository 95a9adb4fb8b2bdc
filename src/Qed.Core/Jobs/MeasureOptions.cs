namespace Qed;

/// <summary>
/// The target of <see cref="ImageFile.MeasureAsync(string, MeasureOptions?, CancellationToken)"/>: the format and
/// geometry of the image whose file size is measured.
/// </summary>
public sealed record MeasureOptions
{
    /// <summary>The target format; default <see cref="ImageFormat.Raw"/>.</summary>
    public ImageFormat Format { get; init; } = ImageFormat.Raw;

    /// <summary>Cluster size of the target in bytes (QED and qcow2); default 64 KiB.</summary>
    public int ClusterSize { get; init; } = 65536;

    /// <summary>Clusters per table (QED); default 4.</summary>
    public int TableSize { get; init; } = 4;

    /// <summary>The source image's format (when measuring an image); null to probe it.</summary>
    public ImageFormat? SourceFormat { get; init; }
}
