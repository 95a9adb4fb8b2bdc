using System.Buffers;
using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// qemu-img rebase: changes the backing file an image names. Safe mode first copies into the image every cluster the
/// image does not hold itself whose content differs between the old and the new backing file, so the image reads the
/// same afterwards; unsafe mode (-u) only rewrites the header. Supported for QED and qcow2 images.
/// </summary>
internal static class RebaseOperation
{
    /// <summary>Rebases the QED or qcow2 image at <paramref name="path"/> onto <paramref name="backing"/> ("" or null: none).</summary>
    /// <param name="path">The image.</param>
    /// <param name="format">Its format (qed or qcow2), or null to probe.</param>
    /// <param name="backing">The new backing file name, stored as given (relative names are relative to the image's folder).</param>
    /// <param name="backingFormat">The new backing file's format; raw sets NO_PROBE, null leaves it to be probed.</param>
    /// <param name="safe">Copy differing clusters first (false: header only, as -u).</param>
    /// <param name="forceShare">
    /// qemu-img's <c>-U</c>: open the new backing file shared, so that a safe rebase works while another process
    /// writes it (and may then copy its data half made). It applies to that open only, as in qemu-img: the image is
    /// opened for writing and its old backing chain with the usual locks, whatever this says.
    /// </param>
    /// <param name="progress">Bytes of the image examined.</param>
    /// <param name="cancellationToken">Cancels the copy; the header is then unchanged and the image reads as before.</param>
    /// <exception cref="NotSupportedException">The image is raw, has unknown (QED) compat feature bits, or is a dirty qcow2.</exception>
    /// <exception cref="ArgumentException">The name does not fit in the header area, or the format is unknown.</exception>
    public static async Task RebaseAsync(string path, string? format, string? backing, string? backingFormat, bool safe, bool forceShare = false,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(backing)) backing = null;
        format ??= await ProbeAsync(path, cancellationToken).ConfigureAwait(false);
        if (format == "qcow2")
        {
            await Qcow2BackingEditor.SetBackingAsync(path, backing, backingFormat, dryRun: true, cancellationToken).ConfigureAwait(false);
            if (safe) await CopyDifferencesAsync(path, format, backing, backingFormat, forceShare, progress, cancellationToken).ConfigureAwait(false);
            await Qcow2BackingEditor.SetBackingAsync(path, backing, backingFormat, dryRun: false, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (format != "qed")
            throw new NotSupportedException($"Rebasing {format} images is not supported (only qed and qcow2)");
        // Refuse what the header write would refuse before copying anything (opened for writing, so a lock conflict
        // is reported first, in the words of that open).
        await using (var image = await OpenQedAsync(path, cancellationToken).ConfigureAwait(false))
            ValidateQedBacking(image, backing, backingFormat);
        if (safe) await CopyDifferencesAsync(path, "qed", backing, backingFormat, forceShare, progress, cancellationToken).ConfigureAwait(false);
        await using (var image = await OpenQedAsync(path, cancellationToken).ConfigureAwait(false))
        {
            ValidateQedBacking(image, backing, backingFormat);
            // The online backing switch: a crash leaves the old chain or the new one (see HeaderWriter).
            await image.SwitchBackingAsync(null, backing, backingFormat, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Opens the QED image for writing without its backing chain: only the header changes, and rebase -u works on an
    /// image whose old backing file is gone.
    /// </summary>
    private static async Task<QedImage> OpenQedAsync(string path, CancellationToken ct) =>
        (QedImage)await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormat.Qed, NoBacking = true }, ct).ConfigureAwait(false);

    /// <summary>
    /// The checks of a QED backing change, in the words rebase has always reported them: a known format, no unknown
    /// compat feature bits (a header rewrite could invalidate them), a name that fits in the header area.
    /// </summary>
    /// <exception cref="NotSupportedException">The image has compat feature bits this program does not know.</exception>
    /// <exception cref="ArgumentException">The name does not fit in the header area, or the format is unknown.</exception>
    private static void ValidateQedBacking(QedImage image, string? name, string? format)
    {
        var header = image.Header;
        if (header.CompatFeatures != 0)
            throw new NotSupportedException($"Could not change the backing file of '{image.Name}': it has unknown compat features 0x{header.CompatFeatures:x}, which a header rewrite could invalidate");
        if (format != null && !QedImage.KnownFormats.Contains(format))
            throw new ArgumentException($"Unknown backing file format '{format}' (known: qed, raw, qcow2)");
        int length = name is null ? 0 : System.Text.Encoding.UTF8.GetByteCount(name);
        long room = Math.Min((long)header.HeaderSize * header.ClusterSize - QedHeader.Size, QedHeader.MaxBackingNameLength);
        if (length > room)
            throw new ArgumentException($"Could not change the backing file to '{(name!.Length > 60 ? name[..60] + "..." : name)}': the name is {length} bytes and the header area of '{image.Name}' has room for {room}");
    }

    private static async Task<string> ProbeAsync(string path, CancellationToken ct)
    {
        try
        {
            // No locks for the probe: the writable open that follows takes them, and a conflict is then reported with
            // the words of that open (as qemu-img, which opens the image read-write first), not a reader's.
            await using var probe = Storage.FileStorage.Open(path, writable: false, locking: Storage.FileLockMode.None);
            return (await ImageOpener.ProbeAsync(probe, ct).ConfigureAwait(false)).Name();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory", path, e);
        }
    }

    private static async Task CopyDifferencesAsync(string path, string format, string? backing, string? backingFormat, bool forceShare,
        IProgress<ImageProgress>? progress, CancellationToken ct)
    {
        await using var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormatNames.FromName(format) }, ct).ConfigureAwait(false);
        await using var newBacking = backing is null ? null : await OpenNewBackingAsync(path, backing, backingFormat, forceShare, ct).ConfigureAwait(false);
        string self = ImageOpener.Canonical(path);
        for (var layer = newBacking; layer != null; layer = layer.Backing)
            if (ImageOpener.Canonical(layer.Name) == self)
                throw new ArgumentException($"Could not rebase '{path}' onto '{backing}': the image would be part of its own backing chain");
        long size = image.Size, cs = image.ClusterSize;
        // Past the end of the old backing file the image reads zeroes because nothing is there: a cluster the new
        // backing file differs in is hidden with a zero cluster. Within it, the old content is copied as data, even
        // where it reads as zeroes (a hole of the old backing file), so the image takes the same clusters as
        // qemu-img's rebase does (observed with qemu-img 7.2 map; iotest 024).
        long oldBackingSize = image.Backing?.Size ?? 0;
        long chunk = Math.Max(cs, 1 << 20);
        byte[] oldView = ArrayPool<byte>.Shared.Rent((int)chunk), newView = ArrayPool<byte>.Shared.Rent((int)chunk);
        try
        {
            for (long offset = 0; offset < size;)
            {
                var extent = await image.GetLayerExtentAsync(offset, Math.Min(chunk, size - offset), ct).ConfigureAwait(false);
                if (extent.Kind != ExtentKind.Unallocated)
                {
                    offset += extent.Length;
                    progress?.Report(new ImageProgress(offset, size));
                    continue;
                }
                // Extents of an unallocated run start and end on cluster boundaries (or the image end).
                int n = (int)extent.Length;
                // Where both the old chain and the new backing file read as zeroes without data there is nothing to
                // compare: this keeps rebasing large sparse images cheap.
                long zeroRun = await ZeroRunAsync(image, offset, n, ct).ConfigureAwait(false);
                if (zeroRun > 0 && newBacking != null && offset < newBacking.Size)
                    zeroRun = Math.Min(zeroRun, await ZeroRunAsync(newBacking, offset, Math.Min(n, newBacking.Size - offset), ct).ConfigureAwait(false));
                zeroRun = zeroRun / cs * cs;
                if (zeroRun > 0)
                {
                    offset += zeroRun;
                    progress?.Report(new ImageProgress(offset, size));
                    continue;
                }
                var oldMem = oldView.AsMemory(0, n);
                var newMem = newView.AsMemory(0, n);
                await image.ReadAsync(offset, oldMem, ct).ConfigureAwait(false); // reads through the old backing file
                newMem.Span.Clear();
                if (newBacking != null && offset < newBacking.Size)
                    await newBacking.ReadAsync(offset, newMem[..(int)Math.Min(n, newBacking.Size - offset)], ct).ConfigureAwait(false);
                for (int at = 0; at < n;)
                {
                    int len = (int)Math.Min(n - at, cs - (offset + at) % cs);
                    var oldSlice = oldMem.Slice(at, len);
                    if (!oldSlice.Span.SequenceEqual(newMem.Span.Slice(at, len)))
                    {
                        // Whole clusters only: a partial one at the image end is written as data.
                        if (len == cs && offset + at >= oldBackingSize && oldSlice.Span.IndexOfAnyExcept((byte)0) < 0)
                            await image.WriteZeroesAsync(offset + at, len, ct).ConfigureAwait(false);
                        else
                            await image.WriteAsync(offset + at, oldSlice, ct).ConfigureAwait(false);
                    }
                    at += len;
                }
                offset += n;
                progress?.Report(new ImageProgress(offset, size));
            }
            await image.FlushAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(oldView);
            ArrayPool<byte>.Shared.Return(newView);
        }
    }

    /// <summary>
    /// Opens the new backing file read-only (shared with writers for <paramref name="forceShare"/>, else with a
    /// reader's locks, which a running writer refuses); failures in qemu-img's words, "Could not open new backing file
    /// 'NAME': REASON" (a lock conflict stays the inner exception, for the hint naming the file in use).
    /// </summary>
    private static async Task<DiskImage> OpenNewBackingAsync(string path, string backing, string? backingFormat, bool forceShare, CancellationToken ct)
    {
        try
        {
            return await DiskImage.OpenAsync(QedImage.ResolveBackingPath(path, backing),
                new ImageOpenOptions { Format = ImageFormatNames.FromName(backingFormat), ReadOnly = true, ForceShare = forceShare }, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ImageFormatException or NotSupportedException or UnauthorizedAccessException)
        {
            // A lock exception's message names the file as opened; qemu-img's line names it as given instead.
            string reason = e is ImageLockedException locked ? locked.Reason : e.Message;
            throw new IOException($"Could not open new backing file '{backing}': {reason}", e);
        }
    }

    /// <summary>Bytes from <paramref name="offset"/> (at most <paramref name="length"/>) that read as zeroes with no data below.</summary>
    private static async ValueTask<long> ZeroRunAsync(DiskImage image, long offset, long length, CancellationToken ct)
    {
        long run = 0;
        while (run < length)
        {
            var extent = await AllocationMap.GetExtentAsync(image, offset + run, length - run, ct).ConfigureAwait(false);
            if (extent.Data || !extent.Zero) break;
            run += extent.Length;
        }
        return run;
    }
}
