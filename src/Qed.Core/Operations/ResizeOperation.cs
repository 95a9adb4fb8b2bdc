using Qed.Formats.Qed;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Operations;

/// <summary>
/// Changes an image's guest size (qemu-img resize). QED grows and shrinks; raw grows and shrinks; qcow2 grows while
/// its L1 table has room. Shrinking must be asked for explicitly, as data past the new end is dropped.
/// </summary>
internal static class ResizeOperation
{
    /// <summary>
    /// Resizes the image file at <paramref name="path"/> (closed: nothing else may have it open) to
    /// <paramref name="newSize"/> bytes.
    /// </summary>
    /// <param name="path">The image file.</param>
    /// <param name="format">qed, raw or qcow2; null to probe.</param>
    /// <param name="newSize">The new guest size in bytes.</param>
    /// <param name="allowShrink">Must be true when <paramref name="newSize"/> is below the current size.</param>
    /// <param name="cancellationToken">Cancels between steps; each step leaves a consistent image.</param>
    /// <exception cref="ArgumentException">The size is invalid, or smaller without <paramref name="allowShrink"/>.</exception>
    /// <exception cref="NotSupportedException">The format cannot resize this way.</exception>
    public static Task ResizeAsync(string path, string? format, long newSize, bool allowShrink, CancellationToken cancellationToken = default) =>
        ResizeAsync(path, format, newSize, relative: 0, allowShrink, cancellationToken);

    /// <summary>
    /// Resizes as <see cref="ResizeAsync(string, string?, long, bool, CancellationToken)"/>; with <paramref name="relative"/>
    /// 1 or -1, to the current size plus or minus <paramref name="size"/> (qemu-img resize's <c>+SIZE</c> / <c>-SIZE</c>).
    /// </summary>
    public static async Task ResizeAsync(string path, string? format, long size, int relative, bool allowShrink, CancellationToken cancellationToken = default)
    {
        long oldSize;
        bool hasBacking;
        // qemu-img resize opens the image read-write before it looks at any size: an image in use is refused with
        // "Failed to get "write" lock" (never the reader's "shared" one), before a shrink or a negative size is.
        // This open only tests the locks (it is closed at once; the open that writes takes them again); any other
        // failure (no such file, no permission) is left to the opens below, which report it in qemu-img's words.
        try
        {
            using (FileStorage.Open(path, writable: true)) { }
        }
        catch (Exception e) when (e is not ImageLockedException) { }
        // A look at the format and sizes only, without locks: the writable open that follows takes the write lock, and
        // is refused (before anything changes) with qemu-img's "Failed to get "write" lock" if the image is in use.
        await using (var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormatNames.FromName(format), ReadOnly = true, Locking = false }, cancellationToken).ConfigureAwait(false))
        {
            format = image.Format.Name();
            oldSize = image.Size;
            hasBacking = image.Backing != null;
        }
        long newSize = relative == 0 ? size : oldSize + relative * size;
        if (relative != 0 && newSize < 0) throw new ArgumentException($"New image size {newSize} would be negative");
        if (newSize < 0) throw new ArgumentException($"Invalid image size specified: {newSize} is negative");
        if (newSize < oldSize && !allowShrink)
            throw new ArgumentException("Use the --shrink option to perform a shrink operation (data past the new end is lost)");
        if (newSize == oldSize) return;

        switch (format)
        {
            case "qed":
                await ResizeQedAsync(path, oldSize, newSize, hasBacking, cancellationToken).ConfigureAwait(false);
                break;
            case "raw":
                await using (var file = FileStorage.Open(path, writable: true))
                {
                    await file.SetLengthAsync(newSize, cancellationToken).ConfigureAwait(false);
                    await file.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
                break;
            case "qcow2":
                await ResizeQcow2Async(path, oldSize, newSize, cancellationToken).ConfigureAwait(false);
                break;
            default:
                throw new NotSupportedException($"Resizing {format} images is not supported");
        }
    }

    /// <summary>
    /// Resizes a QED image through the engine the online image uses: <see cref="QedImage.ResizeAsync"/> (the grown range
    /// zeroed and durable before the header grows; a shrink's mappings past the end dropped durably before the header
    /// shrinks, freed clusters punched only then), and after a shrink <see cref="QedImage.DefragmentAsync"/> to give the
    /// holes back (each move copied and synced before its entry changes, the entry synced before the old place is free).
    /// A crash at any point leaves an image of the old or the new size reading as before below the smaller one, at
    /// worst with leaked clusters.
    /// </summary>
    private static async Task ResizeQedAsync(string path, long oldSize, long newSize, bool hasBacking, CancellationToken ct)
    {
        // The backing chain is opened when there is one: growing zeroes the range a longer backing file would show.
        var options = new ImageOpenOptions { Format = ImageFormat.Qed, NoBacking = !hasBacking };
        await using var image = (QedImage)await DiskImage.OpenAsync(path, options, ct).ConfigureAwait(false);
        await image.ResizeAsync(newSize, new ResizeOptions { AllowShrink = true }, ct).ConfigureAwait(false);
        if (newSize < oldSize) await image.DefragmentAsync(null, ct).ConfigureAwait(false);
    }

    private static async Task ResizeQcow2Async(string path, long oldSize, long newSize, CancellationToken ct)
    {
        if (newSize < oldSize)
            throw new NotSupportedException("Shrinking qcow2 images is not supported (convert to a new image instead)");
        await using var file = FileStorage.Open(path, writable: true);
        var bytes = new byte[4096];
        await file.ReadAsync(0, bytes, ct).ConfigureAwait(false);
        var header = Qcow2Header.Parse(bytes);
        header.Validate(file.Length);
        long rounded = (newSize + 511) & ~511L;
        long entries = Qcow2Header.L1EntriesFor((ulong)rounded, (int)header.ClusterBits);
        // The L1 table was allocated in whole clusters; growing within them needs only the header fields.
        long room = ((long)header.L1Size * 8 + header.ClusterSize - 1) / header.ClusterSize * header.ClusterSize / 8;
        if (entries > room)
            throw new NotSupportedException($"Growing this qcow2 image to {newSize} bytes needs a larger L1 table ({entries} entries, room for {room}); convert it to a new image instead");
        var updated = header with { Size = (ulong)rounded, L1Size = (uint)Math.Max(header.L1Size, entries) };
        var head = new byte[Math.Max((int)header.HeaderLength, Qcow2Header.V3WrittenLength)];
        await file.ReadAsync(0, head, ct).ConfigureAwait(false);
        updated.WriteTo(head);
        // Size and L1 size are both in the first 72 bytes (the version 2 header), which one sector write covers.
        await file.WriteAsync(0, head.AsMemory(0, Qcow2Header.V2Length), ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false);
    }
}
