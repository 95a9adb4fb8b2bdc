namespace Qed;

/// <summary>How <see cref="ImageFile.CompareAsync(string, string, CompareOptions?, CancellationToken)"/> compares.</summary>
public sealed record CompareOptions
{
    /// <summary>
    /// Also require the same allocation (qemu-img compare's <c>-s</c>): images of different sizes, or whose runs
    /// differ in length or in being present, zero or data, do not match even where their bytes are the same.
    /// </summary>
    public bool Strict { get; init; }

    /// <summary>The first image's format; null to probe it.</summary>
    public ImageFormat? FirstFormat { get; init; }

    /// <summary>The second image's format; null to probe it.</summary>
    public ImageFormat? SecondFormat { get; init; }
}
