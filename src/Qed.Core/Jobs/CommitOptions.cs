namespace Qed;

/// <summary>Options of <see cref="ImageFile.CommitAsync(string, CommitOptions?, IProgress{ImageProgress}?, CancellationToken)"/>.</summary>
public sealed record CommitOptions
{
    /// <summary>The layer to commit into (a path in the backing chain); null for the image's own backing file.</summary>
    public string? Base { get; init; }

    /// <summary>
    /// Leave the committed image as it is (qemu-img commit -d) instead of emptying it. A commit into a base deeper than
    /// the image's own backing file never empties the image, whatever this says: the image still names the layer
    /// between as its backing file, and emptied it would read that layer instead of what it held. (qemu-img's
    /// <c>-b</c> implies <c>-d</c> for the same reason; the CLI sets this whenever <c>-b</c> is given.)
    /// </summary>
    public bool KeepTop { get; init; }

    /// <summary>The image's format; null to probe it.</summary>
    public ImageFormat? Format { get; init; }

    /// <summary>Chunk copies kept in flight.</summary>
    public int Parallelism { get; init; } = 8;
}
