using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// Image streaming: copies what the backing chain (or the part of it above a base) supplies into a QED image, then
/// detaches the backing file (or makes the base the backing file). The image stays readable and writable throughout (it
/// may be served meanwhile); a crash or a cancellation at any point leaves a consistent image that reads the same and
/// still names its old backing file until the header is rewritten, as the very last step.
/// </summary>
internal static class StreamOperation
{
    private const int Chunk = 1 << 20;

    /// <summary>Streams the whole chain into <paramref name="image"/>; progress reports guest bytes examined.</summary>
    public static Task RunAsync(QedImage image, IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default) =>
        RunAsync(image, new StreamOptions(), progress, cancellationToken);

    /// <summary>
    /// Streams into <paramref name="image"/> the layers above <see cref="StreamOptions.Base"/> (all of them when it is
    /// null), then rewrites the backing reference; progress reports guest bytes examined.
    /// </summary>
    /// <exception cref="ArgumentException">The base is not in the chain, has another format than asked, or its name does not fit the header; nothing is changed.</exception>
    /// <exception cref="NotSupportedException">The header has compat feature bits this program does not know; nothing is changed.</exception>
    public static Task RunAsync(QedImage image, StreamOptions options, IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default) =>
        RunAsync(image, options, options.BaseFormat?.Name(), progress, cancellationToken);

    /// <summary>
    /// As <see cref="RunAsync(QedImage, StreamOptions, IProgress{ImageProgress}?, CancellationToken)"/>, with the base's
    /// format as qemu-img names it (the qed tool's <c>-F</c>, which may name no format at all: then the base never has it),
    /// in place of <see cref="StreamOptions.BaseFormat"/>.
    /// </summary>
    public static async Task RunAsync(QedImage image, StreamOptions options, string? baseFormat, IProgress<ImageProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Base is null)
        {
            if (options.BackingFile != null || baseFormat != null)
                throw new ArgumentException("A backing file name or format needs a base (-b): streaming the whole chain leaves no backing file");
            if (image.Backing is null) return;
            image.ValidateBackingChange(null);
            await CopyAsync(image, int.MaxValue, null, progress, cancellationToken).ConfigureAwait(false);
            await image.DetachBackingAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        var (layer, depth, storedName) = FindBase(image, options.Base);
        if (baseFormat != null && baseFormat != layer.Format.Name())
            throw new ArgumentException($"The base '{options.Base}' is a {layer.Format.Name()} image, not {baseFormat}");
        string name = options.BackingFile ?? NameFor(image, options.Base, layer, storedName);
        image.ValidateBackingChange(name);
        await CopyAsync(image, depth, layer, progress, cancellationToken).ConfigureAwait(false);
        await image.SwitchBackingAsync(layer, name, layer.Format.Name(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Finds the layer <paramref name="wanted"/> names (top-down), its depth (1 for the backing file) and how the layer above names it.</summary>
    private static (DiskImage Layer, int Depth, string? StoredName) FindBase(QedImage image, string wanted)
    {
        if (image.Backing is null) throw new ArgumentException($"Image '{image.Name}' does not have a backing file, so '{wanted}' cannot be its base");
        string fromCwd = ImageOpener.Canonical(wanted);
        DiskImage parent = image;
        int depth = 1;
        for (var layer = image.Backing; layer != null; parent = layer, layer = layer.Backing, depth++)
        {
            string? stored = StoredBackingName(parent);
            string canonical = ImageOpener.Canonical(layer.Name);
            if (stored == wanted || canonical == fromCwd ||
                canonical == ImageOpener.Canonical(QedImage.ResolveBackingPath(parent.Name, wanted)))
                return (layer, depth, stored);
        }
        throw new ArgumentException($"'{wanted}' is not in the backing chain of '{image.Name}'");
    }

    private static string? StoredBackingName(DiskImage image) => image switch
    {
        QedImage qed => qed.BackingFilename,
        Formats.Qcow2.Qcow2Image qcow2 => qcow2.BackingFilename,
        _ => null,
    };

    /// <summary>The name to record: as given when it reaches the base from the image's folder, else a path relative to that folder.</summary>
    private static string NameFor(QedImage image, string given, DiskImage layer, string? storedName)
    {
        string target = ImageOpener.Canonical(layer.Name);
        if (ImageOpener.Canonical(QedImage.ResolveBackingPath(image.Name, given)) == target) return given;
        if (storedName != null && Path.IsPathRooted(storedName) && ImageOpener.Canonical(storedName) == target) return storedName;
        string folder = Path.GetDirectoryName(Path.GetFullPath(image.Name)) ?? Path.GetFullPath(".");
        return Path.GetRelativePath(folder, Path.GetFullPath(layer.Name));
    }

    /// <summary>
    /// Copies into the image's unallocated clusters what the layers at depths 1 to <paramref name="baseDepth"/>-1
    /// supply. Streaming the whole chain copies data only (zeroes read as zeroes once there is no backing file); down
    /// to a base, zero clusters also hide what the base would otherwise show.
    /// </summary>
    private static async Task CopyAsync(QedImage image, int baseDepth, DiskImage? baseLayer, IProgress<ImageProgress>? progress, CancellationToken ct)
    {
        long cs = image.ClusterSize, size = image.Size;
        long step = Math.Max(Chunk, cs);
        var buffer = new byte[step];
        var need = new bool[step / cs];
        long offset = 0;
        progress?.Report(new ImageProgress(0, size));
        while (offset < size)
        {
            ct.ThrowIfCancellationRequested();
            long limit = Math.Min(size, (offset / step + 1) * step); // never crosses an L2 table (each spans >= 4 MiB and >= a cluster)
            var extent = await image.GetLayerExtentAsync(offset, limit - offset, ct).ConfigureAwait(false);
            if (extent.Kind != ExtentKind.Unallocated)
            {
                offset += extent.Length;
                progress?.Report(new ImageProgress(offset, size));
                continue;
            }
            // Which clusters of the run (cluster-aligned: unallocated runs start on cluster boundaries) need copying.
            int clusters = (int)((extent.Length + cs - 1) / cs);
            Array.Clear(need, 0, clusters);
            bool any = false;
            await foreach (var run in AllocationMap.EnumerateAsync(image, offset, extent.Length, ct).ConfigureAwait(false))
            {
                if (!await NeedsCopyAsync(run, baseDepth, baseLayer, ct).ConfigureAwait(false)) continue;
                for (long c = (run.Offset - offset) / cs, last = (run.Offset + run.Length - 1 - offset) / cs; c <= last; c++) need[c] = true;
                any = true;
            }
            if (!any)
            {
                offset += extent.Length;
                progress?.Report(new ImageProgress(offset, size));
                continue;
            }
            int first = Array.IndexOf(need, true, 0, clusters);
            int end = first;
            while (end < clusters && need[end]) end++;
            long start = offset + first * cs;
            long length = Math.Min(offset + end * cs, offset + extent.Length) - start;
            var data = buffer.AsMemory(0, (int)length);
            await image.ReadAsync(start, data, ct).ConfigureAwait(false);
            long done = await CopyUpAsync(image, start, data, zeroClusters: baseLayer != null, ct).ConfigureAwait(false);
            offset = start + done; // short when a guest request got to a cluster first: look at it again
            progress?.Report(new ImageProgress(offset, size));
        }
    }

    private static async ValueTask<bool> NeedsCopyAsync(ChainExtent run, int baseDepth, DiskImage? baseLayer, CancellationToken ct)
    {
        if (baseLayer is null) return run.Data;
        if (run.Present) return run.Depth < baseDepth;
        // Past the end of a layer above the base the chain reads zeroes; the base might show data there.
        if (run.Depth >= baseDepth - 1 || run.Offset >= baseLayer.Size) return false;
        await foreach (var below in AllocationMap.EnumerateAsync(baseLayer, run.Offset, Math.Min(run.Length, baseLayer.Size - run.Offset), ct).ConfigureAwait(false))
            if (below.Data) return true;
        return false;
    }

    /// <summary>
    /// Allocates the run's clusters with the data read through the chain: clusters of zeroes as zero clusters (or, with
    /// no backing file to come, not at all), the rest as data. Returns the bytes done; fewer than asked when a cluster
    /// was allocated by someone else meanwhile.
    /// </summary>
    private static async ValueTask<long> CopyUpAsync(QedImage image, long start, ReadOnlyMemory<byte> data, bool zeroClusters, CancellationToken ct)
    {
        long cs = image.ClusterSize;
        int at = 0;
        while (at < data.Length)
        {
            bool zero = IsZero(data.Span.Slice(at, (int)Math.Min(cs, data.Length - at)));
            int n = 0;
            while (at + n < data.Length)
            {
                int len = (int)Math.Min(cs, data.Length - at - n);
                if (IsZero(data.Span.Slice(at + n, len)) != zero) break;
                n += len;
            }
            if (zero && !zeroClusters)
            {
                at += n; // no backing file afterwards: unallocated reads as these zeroes
                continue;
            }
            int whole = zero ? (int)(n / cs * cs) : n;
            if (whole > 0 && !(zero
                    ? await image.CopyUpZeroesAsync(start + at, whole, ct).ConfigureAwait(false)
                    : await image.CopyUpAsync(start + at, data.Slice(at, whole), ct).ConfigureAwait(false)))
                return at;
            if (whole < n && !await image.CopyUpAsync(start + at + whole, data.Slice(at + whole, n - whole), ct).ConfigureAwait(false))
                return at + whole; // the image's partial last cluster, written as zero bytes
            at += n;
        }
        return at;
    }

    private static bool IsZero(ReadOnlySpan<byte> span) => span.IndexOfAnyExcept((byte)0) < 0;
}
