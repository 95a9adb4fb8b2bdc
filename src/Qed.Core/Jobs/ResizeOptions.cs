namespace Qed;

/// <summary>
/// Options of <see cref="ImageFile.ResizeAsync(string, long, ResizeOptions?, CancellationToken)"/> and
/// <see cref="Formats.Qed.QedImage.ResizeAsync(long, ResizeOptions?, CancellationToken)"/>.
/// </summary>
public sealed record ResizeOptions
{
    /// <summary>
    /// Allow a size below the current one. Data past the new end is dropped, so shrinking must be asked for; without
    /// it a smaller size is an <see cref="ArgumentException"/> and nothing changes.
    /// </summary>
    public bool AllowShrink { get; init; }

    /// <summary>The image's format; null to probe it (path-based resize only).</summary>
    public ImageFormat? Format { get; init; }
}
