using Qed.Check;
using Qed.Formats.Qcow2;
using Qed.Formats.Qed;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Checks the consistency of the QED or qcow2 image file at <paramref name="path"/> as <c>qemu-img check</c> does,
    /// repairing what <see cref="CheckOptions.Repair"/> allows. The file alone is checked (not its backing chain), before
    /// anything trusts its tables; the automatic check of an open is not run.
    /// </summary>
    /// <param name="path">The image file; opened read-only unless repairing.</param>
    /// <param name="options">What to repair and the format; null to report only, format probed.</param>
    /// <param name="progress">Guest bytes whose tables are checked (QED: after each L2 table; qcow2: at the start and the
    /// end), see <see cref="ImageProgress"/>.</param>
    /// <param name="cancellationToken">Stops the check; a repair cut off leaves an image no worse than it found.</param>
    /// <returns>The counters and messages; <see cref="ImageCheckResult.Failure"/> says why a check could not finish.</returns>
    /// <exception cref="NotSupportedException">The image is raw (raw images have no metadata to check), or uses a qcow2
    /// feature the check cannot follow.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFormatException">The header is invalid: nothing can be checked.</exception>
    /// <exception cref="ImageLockedException">Another writer has the file open.</exception>
    public static async Task<ImageCheckResult> CheckAsync(string path, CheckOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new CheckOptions();
        CheckFormat(options.Format, nameof(options));
        if (!Enum.IsDefined(options.Repair)) throw new ArgumentOutOfRangeException(nameof(options), options.Repair, "Not a CheckRepair value.");
        if (options.Format == ImageFormat.Raw) throw RawHasNoCheck(path);
        return await QedChecker.CheckFileAsync(path, options.Format?.Name(), options.Repair, progress, cancellationToken).ConfigureAwait(false)
            ?? throw RawHasNoCheck(path);
    }

    /// <summary>
    /// Checks the file of an image that is already open, without repairing (a repair needs the file to itself: close the
    /// image and use <see cref="CheckAsync(string, CheckOptions?, IProgress{ImageProgress}?, CancellationToken)"/>).
    /// A writable image is flushed first, so the check sees what it has written; only the top layer is checked.
    /// </summary>
    /// <param name="image">An open QED or qcow2 image.</param>
    /// <param name="options">Null, or options whose <see cref="CheckOptions.Repair"/> is <see cref="CheckRepair.None"/>
    /// (and whose format, if given, is the image's).</param>
    /// <param name="progress">As for a check by path.</param>
    /// <param name="cancellationToken">Stops the check.</param>
    /// <remarks>Writes made while the check runs may show as leaks or corruptions that are not there: for an exact
    /// answer, let no write run meanwhile.</remarks>
    /// <exception cref="ArgumentException"><see cref="CheckOptions.Repair"/> is not <see cref="CheckRepair.None"/>, or the
    /// format given is not the image's.</exception>
    /// <exception cref="NotSupportedException">The image is raw, or not one of this library's QED or qcow2 images.</exception>
    public static async Task<ImageCheckResult> CheckAsync(DiskImage image, CheckOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (options is { Repair: not CheckRepair.None })
            throw new ArgumentException($"An open image is checked without repair (CheckOptions.Repair is {options.Repair}): dispose '{image.Name}' and call CheckAsync with its path to repair it", nameof(options));
        if (options?.Format is { } format && format != image.Format)
            throw new ArgumentException($"CheckOptions.Format is {format}, but '{image.Name}' is a {image.Format} image", nameof(options));
        if (!image.IsReadOnly) await image.FlushAsync(cancellationToken).ConfigureAwait(false);
        return image switch
        {
            QedImage qed => await QedChecker.CheckAsync(new OpenImageFileView(qed.Storage, qed.FileLengthInUse), CheckRepair.None, progress, cancellationToken).ConfigureAwait(false),
            Qcow2Image qcow2 => await Qcow2Checker.CheckAsync(qcow2.Storage, CheckRepair.None, progress, cancellationToken).ConfigureAwait(false),
            Formats.Raw.RawImage => throw RawHasNoCheck(image.Name),
            _ => throw new NotSupportedException($"'{image.Name}' is a {image.GetType().Name}: only QED and qcow2 images opened by this library can be checked"),
        };
    }

    private static NotSupportedException RawHasNoCheck(string path) =>
        new($"'{path}' is a raw image, which has no metadata to check: ImageFile.CheckAsync checks QED and qcow2 images");
}
