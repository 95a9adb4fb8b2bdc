using Qed.Formats.Qed;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Operations;

/// <summary>
/// Changes an image's guest size (qemu-img resize). QED grows and shrinks; raw grows and shrinks; qcow2 grows while
/// its L1 table has room. Shrinking must be asked for explicitly, as data past the new end is dropped.
/// </summary>
public static class ResizeOperation
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
    public static async Task ResizeAsync(string path, string? format, long newSize, bool allowShrink, CancellationToken cancellationToken = default)
    {
        long oldSize;
        DiskImage? backing;
        long backingSize = 0;
        // A look at the format and sizes only, without locks: the writable open that follows takes the write lock, and
        // is refused (before anything changes) with qemu-img's "Failed to get "write" lock" if the image is in use.
        await using (var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = format, ReadOnly = true, Locking = false }, cancellationToken).ConfigureAwait(false))
        {
            format = image.Format;
            oldSize = image.Size;
            backing = image.Backing;
            if (backing != null) backingSize = backing.Size;
        }
        if (newSize < 0) throw new ArgumentException($"Invalid image size specified: {newSize} is negative");
        if (newSize < oldSize && !allowShrink)
            throw new ArgumentException("Use the --shrink option to perform a shrink operation (data past the new end is lost)");
        if (newSize == oldSize) return;

        switch (format)
        {
            case "qed":
                await ResizeQedAsync(path, oldSize, newSize, backing != null, backingSize, cancellationToken).ConfigureAwait(false);
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

    private static async Task ResizeQedAsync(string path, long oldSize, long newSize, bool hasBacking, long backingSize, CancellationToken ct)
    {
        var options = new ImageOpenOptions { Format = "qed", NoBacking = !hasBacking };
        uint clusterSize;
        await using (var editor = await QedFileEditor.OpenAsync(path, ct).ConfigureAwait(false))
        {
            var h = editor.Header;
            clusterSize = h.ClusterSize;
            long max = QedHeader.MaxImageSize(h.ClusterSize, h.TableSize);
            if (newSize % 512 != 0 || newSize > max)
                throw new ArgumentException($"Invalid image size specified: {newSize} must be a multiple of 512 and at most {max}");
        }
        long cs = clusterSize;
        if (newSize > oldSize)
        {
            await using (var editor = await QedFileEditor.OpenAsync(path, ct).ConfigureAwait(false))
                await editor.SetSizeAsync(newSize, ct).ConfigureAwait(false);
            // The grown range must read as zeroes: the rest of the old last cluster may hold bytes past the old end,
            // and a backing file longer than the old size would show through unallocated clusters.
            long zeroEnd = Math.Min(newSize, Math.Max((oldSize + cs - 1) / cs * cs, hasBacking ? backingSize : 0));
            if (zeroEnd > oldSize)
            {
                await using var image = await DiskImage.OpenAsync(path, options, ct).ConfigureAwait(false);
                await image.WriteZeroesAsync(oldSize, zeroEnd - oldSize, ct).ConfigureAwait(false);
                await image.FlushAsync(ct).ConfigureAwait(false);
            }
            return;
        }

        // Shrink. The bytes of the new last cluster past the new end are zeroed, so a later grow reads zeroes there.
        long keepEnd = Math.Min(oldSize, (newSize + cs - 1) / cs * cs);
        if (keepEnd > newSize)
        {
            await using var image = await DiskImage.OpenAsync(path, options, ct).ConfigureAwait(false);
            await image.WriteZeroesAsync(newSize, keepEnd - newSize, ct).ConfigureAwait(false);
            await image.FlushAsync(ct).ConfigureAwait(false);
        }
        await using (var editor = await QedFileEditor.OpenAsync(path, ct).ConfigureAwait(false))
        {
            await editor.DropMappingsFromAsync((newSize + cs - 1) / cs, ct).ConfigureAwait(false);
            await editor.ReclaimAsync(null, ct).ConfigureAwait(false);
            await editor.SetSizeAsync(newSize, ct).ConfigureAwait(false); // last: a crash before leaves the old size
        }
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
