using System.Runtime.CompilerServices;
using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// How large a file converting the image at <paramref name="path"/> (its whole chain) into
    /// <see cref="MeasureOptions.Format"/> would make, as <c>qemu-img measure</c> computes it (QEMU cannot measure QED:
    /// for QED it counts the header, L1, the L2 tables the data needs and the data clusters).
    /// </summary>
    /// <param name="path">The image file; opened read-only with its backing chain.</param>
    /// <param name="options">The target's format and geometry; null for raw.</param>
    /// <param name="cancellationToken">Stops the measurement.</param>
    /// <exception cref="ArgumentException">The target geometry is invalid (the message names the field).</exception>
    /// <exception cref="FileNotFoundException">The image, or a file of its chain, does not exist.</exception>
    public static async Task<SizeMeasurement> MeasureAsync(string path, MeasureOptions? options = null, CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new MeasureOptions();
        CheckFormat(options.Format, nameof(options));
        CheckFormat(options.SourceFormat, nameof(options));
        await using var image = await DiskImage.OpenAsync(path, ReadOnly(options.SourceFormat), cancellationToken).ConfigureAwait(false);
        return await MeasureOperation.ForImageAsync(image, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How large a file a new, empty image of <paramref name="size"/> guest bytes needs in <see cref="MeasureOptions.Format"/>.</summary>
    /// <param name="size">The guest size in bytes (rounded up to 512, as images are).</param>
    /// <param name="options">The target's format and geometry; null for raw.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is negative.</exception>
    /// <exception cref="ArgumentException">The target geometry is invalid, or cannot address <paramref name="size"/>.</exception>
    public static SizeMeasurement Measure(long size, MeasureOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        options ??= new MeasureOptions();
        CheckFormat(options.Format, nameof(options));
        return MeasureOperation.ForSize(size, options);
    }

    /// <summary>
    /// The allocation map of the image at <paramref name="path"/> through its backing chain, as <c>qemu-img map</c>
    /// gives it: runs in guest order, neighbours with the same properties merged, each saying which layer supplies it
    /// and whether it is data, zeroes or nothing.
    /// </summary>
    /// <param name="path">The image file; opened read-only with its backing chain while the enumeration runs, and
    /// closed when it ends (each run's <see cref="ChainExtent.Layer"/> is then disposed: use it only meanwhile).</param>
    /// <param name="options">The range and the format; null for the whole image, format probed.</param>
    /// <param name="cancellationToken">Stops the enumeration.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the image.</exception>
    public static IAsyncEnumerable<ChainExtent> MapAsync(string path, MapOptions? options = null, CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new MapOptions();
        CheckFormat(options.Format, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.Offset, nameof(options));
        if (options.Length is { } length) ArgumentOutOfRangeException.ThrowIfNegative(length, nameof(options));
        return MapCoreAsync(path, options, cancellationToken);
    }

    private static async IAsyncEnumerable<ChainExtent> MapCoreAsync(string path, MapOptions options, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var image = await DiskImage.OpenAsync(path, ReadOnly(options.Format), ct).ConfigureAwait(false);
        long length = options.Length ?? Math.Max(0, image.Size - options.Offset);
        if (options.Offset > image.Size || length > image.Size - options.Offset)
            throw new ArgumentOutOfRangeException(nameof(options), $"The range at {options.Offset} of {length} bytes is outside the {image.Size}-byte image '{path}'");
        await foreach (var extent in AllocationMap.EnumerateAsync(image, options.Offset, length, ct).ConfigureAwait(false))
            yield return extent;
    }
}
