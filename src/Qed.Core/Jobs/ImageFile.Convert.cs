using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Copies the guest content of the image <paramref name="source"/> (its whole backing chain) into a new image
    /// <paramref name="destination"/> of <paramref name="format"/>, as <c>qemu-img convert</c> does: ranges that read as
    /// zeroes are not written, so the new image is sparse and has no backing file.
    /// </summary>
    /// <param name="source">The image to copy; opened read-only, its format probed unless <see cref="ConvertOptions.SourceFormat"/> is set.</param>
    /// <param name="destination">The new image file. It must not exist: an existing file is never replaced.</param>
    /// <param name="format">The new image's format.</param>
    /// <param name="options">How to copy and the new image's cluster size; null for the defaults.</param>
    /// <param name="progress">Guest bytes of the source dealt with (copied or skipped), after each chunk (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy; the partly written new file is then removed.</param>
    /// <exception cref="ArgumentException">A path is empty, an option is invalid, or <paramref name="destination"/> is a
    /// file of the source's backing chain.</exception>
    /// <exception cref="IOException"><paramref name="destination"/> already exists, or a read or write failed (the new
    /// file is then removed).</exception>
    /// <exception cref="FileNotFoundException">The source, or a file of its backing chain, does not exist.</exception>
    /// <exception cref="ImageFormatException">The source is not a valid image.</exception>
    public static async Task ConvertAsync(string source, string destination, ImageFormat format, ConvertOptions? options = null,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckPath(source, nameof(source));
        CheckPath(destination, nameof(destination));
        CheckFormat(format, nameof(format));
        options ??= new ConvertOptions();
        CheckFormat(options.SourceFormat, nameof(options));
        ValidateCopy(options);
        if (options.Target?.BackingFile is { } backing)
            throw new ArgumentException($"ConvertOptions.Target.BackingFile is '{backing}', but ImageFile.ConvertAsync makes a standalone image (the source's whole chain is copied)", nameof(options));

        await using var from = await DiskImage.OpenAsync(source, ReadOnly(options.SourceFormat), cancellationToken).ConfigureAwait(false);
        // Creating the target over a file the source reads from would destroy the data being copied (by any name).
        if (ConvertOperation.FindLayerInFile(from, destination) is { } layer)
            throw new ArgumentException($"Cannot convert into '{destination}': it is '{layer.Name}', a file of the source's backing chain", nameof(destination));
        if (File.Exists(destination) || Directory.Exists(destination) || new FileInfo(destination).LinkTarget != null)
            throw new IOException($"Cannot convert into '{destination}': the file already exists (ImageFile.ConvertAsync never replaces a file)");

        // The target's own options (cluster size, the format's record) with the source's size; a bad option is refused
        // here, before any file exists.
        var create = (options.Target ?? new ImageCreateOptions()) with { Size = from.Size };
        // Only a new file: the check above gives the clear message, the exclusive create closes the gap after it.
        var to = await ImageCreation.CreateAsync(destination, format, create, onlyNew: true, cancellationToken).ConfigureAwait(false);
        try
        {
            // Closed before a failure removes it, so nothing writes to the file after it is gone.
            await using (to.ConfigureAwait(false))
                // The file was just created without a backing file: it reads as zeroes, so zero ranges need no writes.
                await ConvertOperation.CopyAsync(from, to, options with { TargetIsZeroed = true }, progress, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // A half-written new image is worse than none; this call created the file, so it may remove it.
            try { File.Delete(destination); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Copies the guest content of the open image <paramref name="source"/> into the open, writable image
    /// <paramref name="destination"/> (at least as large), writing only the blocks that differ, and flushes it.
    /// </summary>
    /// <param name="source">The image to copy (its whole backing chain).</param>
    /// <param name="destination">The image to write; afterwards its first <c>source.Size</c> bytes read as the source's.</param>
    /// <param name="options">How to copy (<see cref="ConvertOptions.Target"/> and <see cref="ConvertOptions.SourceFormat"/> are not used).</param>
    /// <param name="progress">Guest bytes of the source dealt with, after each chunk (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy; the destination then holds part of the source's content.</param>
    /// <exception cref="ArgumentException">The destination is smaller than the source, or an option is invalid.</exception>
    /// <exception cref="InvalidOperationException">The destination is open read-only.</exception>
    public static Task ConvertAsync(DiskImage source, DiskImage destination, ConvertOptions? options = null,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        options ??= new ConvertOptions();
        ValidateCopy(options);
        if (destination.IsReadOnly) throw new InvalidOperationException($"The image '{destination.Name}' is open read-only: it cannot be converted into");
        // What the destination holds now is unknown: every block is compared before it is written.
        return ConvertOperation.CopyAsync(source, destination, options with { TargetIsZeroed = false }, progress, cancellationToken);
    }

    private static void ValidateCopy(ConvertOptions options)
    {
        if (options.MinSparse < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MinSparse, "ConvertOptions.MinSparse must be 0 or positive");
        if (options.Parallelism <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Parallelism, "ConvertOptions.Parallelism must be positive");
        if (options.ChunkSize <= 0 || (options.MinSparse > 0 && options.ChunkSize % options.MinSparse != 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.ChunkSize, "ConvertOptions.ChunkSize must be a positive multiple of ConvertOptions.MinSparse");
    }
}
