namespace Qed;

/// <summary>Which part of an image <see cref="ImageFile.MapAsync(string, MapOptions?, CancellationToken)"/> describes.</summary>
public sealed record MapOptions
{
    /// <summary>The guest offset to start at; default 0.</summary>
    public long Offset { get; init; }

    /// <summary>Bytes to describe from <see cref="Offset"/>; null for the rest of the image.</summary>
    public long? Length { get; init; }

    /// <summary>The image's format; null to probe it.</summary>
    public ImageFormat? Format { get; init; }
}
