using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Compares the guest content of two images as <c>qemu-img compare</c> does: ranges that read as zeroes in both
    /// are not read, and when the sizes differ the extra part of the larger image must read as zeroes (unless
    /// <see cref="CompareOptions.Strict"/>, where a size difference alone is a mismatch).
    /// </summary>
    /// <param name="first">The first image file; opened read-only with its backing chain.</param>
    /// <param name="second">The second image file; opened read-only with its backing chain.</param>
    /// <param name="options">Strictness and the formats; null to compare content only, formats probed.</param>
    /// <param name="cancellationToken">Stops the comparison.</param>
    /// <returns>Whether they match, and where they first differ.</returns>
    /// <exception cref="FileNotFoundException">An image, or a file of its chain, does not exist.</exception>
    /// <exception cref="ImageFormatException">An image is not valid.</exception>
    public static async Task<CompareResult> CompareAsync(string first, string second, CompareOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        CheckPath(first, nameof(first));
        CheckPath(second, nameof(second));
        options ??= new CompareOptions();
        CheckFormat(options.FirstFormat, nameof(options));
        CheckFormat(options.SecondFormat, nameof(options));
        await using var a = await DiskImage.OpenAsync(first, ReadOnly(options.FirstFormat), cancellationToken).ConfigureAwait(false);
        await using var b = await DiskImage.OpenAsync(second, ReadOnly(options.SecondFormat), cancellationToken).ConfigureAwait(false);
        return await CompareOperation.CompareAsync(a, b, options.Strict, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Compares the guest content of two open images; see <see cref="CompareAsync(string, string, CompareOptions?, CancellationToken)"/>.</summary>
    /// <param name="first">The first image.</param>
    /// <param name="second">The second image.</param>
    /// <param name="options">Strictness (the formats are not used: the images are open); null to compare content only.</param>
    /// <param name="cancellationToken">Stops the comparison.</param>
    public static Task<CompareResult> CompareAsync(DiskImage first, DiskImage second, CompareOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        return CompareOperation.CompareAsync(first, second, options?.Strict ?? false, cancellationToken);
    }
}
