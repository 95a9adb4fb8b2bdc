using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Changes the guest size of the image file at <paramref name="path"/> (qemu-img resize). QED and raw grow and
    /// shrink; qcow2 grows while its L1 table has room. Growing makes the new range read as zeroes.
    /// </summary>
    /// <param name="path">The image file; nothing else may have it open for writing.</param>
    /// <param name="newSize">The new guest size in bytes (a multiple of 512 for QED).</param>
    /// <param name="options">Whether shrinking is allowed, and the format; null to grow only, format probed.</param>
    /// <param name="cancellationToken">Stops between steps; each step leaves a consistent image.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="newSize"/> is negative.</exception>
    /// <exception cref="ArgumentException"><paramref name="newSize"/> is below the current size without
    /// <see cref="ResizeOptions.AllowShrink"/>, or is invalid for the format; nothing is changed.</exception>
    /// <exception cref="NotSupportedException">The format cannot resize this way (shrinking qcow2, growing past its L1 table).</exception>
    public static async Task ResizeAsync(string path, long newSize, ResizeOptions? options = null, CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        ArgumentOutOfRangeException.ThrowIfNegative(newSize);
        options ??= new ResizeOptions();
        CheckFormat(options.Format, nameof(options));
        if (!options.AllowShrink)
        {
            // A look at the size only (no locks: the resize's writable open takes them), so that the refusal names the
            // API's option rather than the qed tool's.
            long size;
            await using (var image = await DiskImage.OpenAsync(path, ReadOnly(options.Format) with { Locking = false, NoBacking = true }, cancellationToken).ConfigureAwait(false))
                size = image.Size;
            if (newSize < size)
                throw new ArgumentException($"Cannot resize '{path}' from {size} to {newSize} bytes: shrinking drops the data past the new end, so it needs ResizeOptions.AllowShrink", nameof(newSize));
        }
        await ResizeOperation.ResizeAsync(path, options.Format?.Name(), newSize, options.AllowShrink, cancellationToken).ConfigureAwait(false);
    }
}
