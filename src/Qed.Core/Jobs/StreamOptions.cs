namespace Qed;

/// <summary>Options of <see cref="ImageFile.StreamAsync(string, StreamOptions?, IProgress{ImageProgress}?, CancellationToken)"/>.</summary>
public sealed record StreamOptions
{
    /// <summary>
    /// The layer to stream down to (QEMU's block-stream <c>base</c>): the layers above it are copied into the image,
    /// it and the layers below stay as they are and it becomes the image's backing file. Named as the layer above it
    /// names it, as a path relative to that layer's folder, or as a path from the current directory. Null streams the
    /// whole chain and drops the backing file.
    /// </summary>
    public string? Base { get; init; }

    /// <summary>The format the base must have (raw is recorded as BACKING_FORMAT_NO_PROBE); null accepts its own.</summary>
    public ImageFormat? BaseFormat { get; init; }

    /// <summary>
    /// The backing file name to record for the base. Null: <see cref="Base"/> as given when it names the base from the
    /// image's folder, else the base's path relative to the image's folder (absolute if the chain named it so).
    /// </summary>
    public string? BackingFile { get; init; }
}
