namespace Qed;

/// <summary>
/// Whole-image jobs on image files, one call each, as <c>ZipFile</c> and <c>TarFile</c> are for archives: convert,
/// compare, check (and repair), measure, map, resize, rebase, commit, defragment, stream and migrate. Each opens the
/// files it needs, does the job and closes them again; the long ones report <see cref="ImageProgress"/> and every
/// one stops at its next step when its <see cref="CancellationToken"/> is cancelled, leaving a consistent image (what
/// each leaves is in its remarks).
/// </summary>
/// <remarks>
/// The jobs take the files' locks as the images' own opens do: a file another process (or another open image in this
/// one) is writing is refused with <see cref="ImageLockedException"/>. Every method is safe to call from many threads at
/// once for different files. Formats are probed from the files unless an options record names them.
/// </remarks>
public static partial class ImageFile
{
    /// <summary>The options of a read-only open of an image and its chain, in <paramref name="format"/> or probed.</summary>
    private static ImageOpenOptions ReadOnly(ImageFormat? format) => new() { Format = format, ReadOnly = true };

    /// <summary>The options of a read-write open, in <paramref name="format"/> or probed.</summary>
    private static ImageOpenOptions Writable(ImageFormat? format) => new() { Format = format };

    /// <summary>Throws unless <paramref name="path"/> names something (not null, not empty).</summary>
    private static void CheckPath(string path, string paramName)
    {
        ArgumentException.ThrowIfNullOrEmpty(path, paramName);
    }

    /// <summary>Throws unless <paramref name="format"/> is one of <see cref="ImageFormat"/>'s values.</summary>
    private static void CheckFormat(ImageFormat format, string paramName)
    {
        if (!Enum.IsDefined(format)) throw new ArgumentOutOfRangeException(paramName, format, "Not an ImageFormat value.");
    }

    private static void CheckFormat(ImageFormat? format, string paramName)
    {
        if (format is { } f) CheckFormat(f, paramName);
    }
}
