using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Changes the backing file the QED or qcow2 image at <paramref name="path"/> names (qemu-img rebase). By default the
    /// image reads the same afterwards: every cluster it does not hold itself whose content differs between the old and
    /// the new backing file is copied into it first. <see cref="RebaseOptions.Unsafe"/> only rewrites the name.
    /// </summary>
    /// <param name="path">The image file; opened for writing.</param>
    /// <param name="newBacking">The new backing file name, stored as given (a relative name is relative to the image's
    /// folder); null or empty for none (the image then holds all its content).</param>
    /// <param name="options">Safe or unsafe, the formats, sharing; null for a safe rebase, formats probed.</param>
    /// <param name="progress">Guest bytes of the image examined (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy; the header is then unchanged and the image reads as before.</param>
    /// <exception cref="NotSupportedException">The image is raw, has unknown (QED) compat feature bits, or is a dirty qcow2.</exception>
    /// <exception cref="ArgumentException">The name does not fit in the header, or the image would back itself.</exception>
    /// <exception cref="IOException">The new backing file cannot be opened (the message names it).</exception>
    public static Task RebaseAsync(string path, string? newBacking, RebaseOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new RebaseOptions();
        CheckFormat(options.Format, nameof(options));
        CheckFormat(options.BackingFormat, nameof(options));
        if (options.Format == ImageFormat.Raw)
            throw new NotSupportedException($"Cannot rebase '{path}': raw images have no backing file (only QED and qcow2 do)");
        return RebaseOperation.RebaseAsync(path, options.Format?.Name(), newBacking, options.BackingFormat?.Name(), safe: !options.Unsafe,
            options.ForceShare, progress, cancellationToken);
    }
}
