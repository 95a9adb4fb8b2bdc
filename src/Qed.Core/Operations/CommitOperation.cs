using System.Buffers;
using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// qemu-img commit: writes what the image (and the layers between it and the base) hold into the base, flushes the
/// base, then empties the image so it reads through to the base (QEMU cannot empty a QED image; this does) when the base
/// is the image's own backing file. Every image above the base that is kept reads as before. Until the
/// base is flushed the image is untouched, so a commit cancelled or crashed at any point loses nothing: the image still
/// reads as before, and the base holds some of the image's data, as a commit means it to.
/// </summary>
internal static class CommitOperation
{
    /// <summary>Commits the image at <paramref name="path"/> into its backing file (or <see cref="CommitOptions.Base"/>).</summary>
    /// <returns>The path of the base that received the data.</returns>
    /// <exception cref="ArgumentException">The image has no backing file, or the base is not in its chain.</exception>
    /// <exception cref="CommitCopyException">Reading the chain or writing the base failed during the copy (the image is unchanged).</exception>
    public static async Task<string> CommitAsync(string path, string? format, CommitOptions? options = null,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new CommitOptions();
        // First look at the chain read-only: find the base and whether it must grow to hold the image.
        string basePath;
        string baseFormat;
        long topSize, baseSize;
        bool baseIsBacking;
        int baseDepth = 0;
        await using (var top = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormatNames.FromName(format), ReadOnly = true }, cancellationToken).ConfigureAwait(false))
        {
            format = top.Format.Name();
            var layer = FindBase(top, options.Base);
            basePath = layer.Name;
            baseFormat = layer.Format.Name();
            topSize = top.Size;
            baseSize = layer.Size;
            baseIsBacking = layer == top.Backing;
            for (var l = top; l != layer; l = l.Backing!) baseDepth++;
        }
        if (baseSize < topSize)
            await ResizeOperation.ResizeAsync(basePath, baseFormat, topSize, allowShrink: false, cancellationToken).ConfigureAwait(false);

        await using (var top = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormatNames.FromName(format), ReadOnly = true, WritableBacking = basePath },
            cancellationToken).ConfigureAwait(false))
        {
            // The same layer, by depth: the chain is the one just looked at (the base now opened for writing).
            var baseImage = top;
            for (int i = 0; i < baseDepth; i++) baseImage = baseImage.Backing ?? throw new InvalidOperationException($"The backing chain of '{path}' changed during the commit");
            if (baseImage.IsReadOnly) throw new InvalidOperationException($"The base '{basePath}' could not be opened for writing");
            try
            {
                await CopyAsync(top, baseImage, baseDepth, options.Parallelism, progress, cancellationToken).ConfigureAwait(false);
                await baseImage.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                while (e is AggregateException { InnerExceptions.Count: 1 } one) e = one.InnerException!;
                throw new CommitCopyException(basePath, e);
            }
        }

        // The base now durably holds everything the image showed: emptying it cannot lose data, and reads through to
        // the base only when the base is its backing file (over a layer between, emptied would read that layer).
        if (!options.KeepTop && baseIsBacking && format == "qed")
        {
            // Without the backing chain: emptying reads nothing, only drops every mapping (see QedImage.EmptyAsync).
            await using var image = (QedImage)await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormat.Qed, NoBacking = true },
                CancellationToken.None).ConfigureAwait(false);
            await image.EmptyAsync(CancellationToken.None).ConfigureAwait(false);
        }
        return basePath;
    }

    /// <summary>
    /// The layer <paramref name="basePath"/> names, by qemu-img's rule (observed with qemu-img 7.2 commit -b, iotest
    /// 020): each layer's backing file is matched by the name that layer records for it, or by the given name resolved
    /// against that layer's folder (an absolute name as it is) when both are the same existing file after every link
    /// is followed. A relative name is never resolved against the working directory. The backing file itself when no
    /// name is given.
    /// </summary>
    private static DiskImage FindBase(DiskImage top, string? basePath)
    {
        // qemu-img's words and order: a named base is looked for first (in a chain of one image too).
        if (basePath is null) return top.Backing ?? throw new ArgumentException("Image does not have a backing file");
        for (DiskImage parent = top, layer = top.Backing!; layer != null; parent = layer, layer = layer.Backing!)
        {
            if (StoredBackingName(parent) == basePath) return layer;
            string? wanted = ResolveAgainst(parent, basePath) is { } resolved ? RealPath(resolved) : null;
            if (wanted != null && wanted == RealPath(ImageName.HostPathOf(layer.Name))) return layer;
        }
        throw new ArgumentException($"Did not find '{basePath}' in the backing chain of '{top.Name}'"); // qemu-img's words
    }

    private static string? StoredBackingName(DiskImage image) => image switch
    {
        QedImage qed => qed.BackingFilename,
        Formats.Qcow2.Qcow2Image qcow2 => qcow2.BackingFilename,
        _ => null,
    };

    /// <summary><paramref name="name"/> as the layer <paramref name="parent"/> would resolve it as its backing file; null where it cannot.</summary>
    private static string? ResolveAgainst(DiskImage parent, string name)
    {
        try
        {
            return ImageName.HostPathOf(QedImage.ResolveBackingPath(parent.Name, name));
        }
        catch (ImageFormatException)
        {
            return null; // a quorum: no folder to resolve against
        }
    }

    /// <summary>
    /// The absolute path of <paramref name="path"/> with every symbolic link followed and every "." and ".." taken
    /// physically, as realpath(3) gives it; null when a component does not exist (or links loop).
    /// </summary>
    private static string? RealPath(string path, int depth = 0)
    {
        if (depth > 40 || path.Length == 0) return null; // ELOOP, as the C library's limit
        string full = Path.IsPathRooted(path) ? path : Path.Combine(Directory.GetCurrentDirectory(), path);
        string current = "/";
        foreach (string part in full.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? "/";
                continue;
            }
            string next = Path.Combine(current, part);
            FileSystemInfo info = new FileInfo(next);
            if (!info.Exists)
            {
                info = new DirectoryInfo(next);
                if (!info.Exists && info.LinkTarget is null) return null;
            }
            if (info.LinkTarget is { } target)
            {
                string? resolved = RealPath(Path.IsPathRooted(target) ? target : Path.Combine(current, target), depth + 1);
                if (resolved is null) return null;
                next = resolved;
            }
            current = next;
        }
        return current;
    }

    private readonly record struct Piece(long Offset, int Length, bool Zero);

    private static async Task CopyAsync(DiskImage top, DiskImage baseImage, int baseDepth, int parallelism,
        IProgress<ImageProgress>? progress, CancellationToken ct)
    {
        const int Chunk = 1 << 20;
        long total = top.Size, done = 0;
        progress?.Report(new ImageProgress(0, total));
        async IAsyncEnumerable<Piece> Pieces()
        {
            await foreach (var extent in AllocationMap.EnumerateAsync(top, 0, top.Size, ct).ConfigureAwait(false))
            {
                // Only what a layer above the base supplies; the base's own content and holes stay as they are.
                if (extent.Depth >= baseDepth || !extent.Present)
                {
                    progress?.Report(new ImageProgress(Interlocked.Add(ref done, extent.Length), total));
                    continue;
                }
                for (long offset = extent.Offset, end = extent.Offset + extent.Length; offset < end;)
                {
                    long next = Math.Min(end, (offset / Chunk + 1) * Chunk);
                    yield return new Piece(offset, (int)(next - offset), extent.Zero && !extent.Data);
                    offset = next;
                }
            }
        }
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = ct };
        await Parallel.ForEachAsync(Pieces(), parallel, async (piece, token) =>
        {
            if (piece.Zero)
            {
                await baseImage.WriteZeroesAsync(piece.Offset, piece.Length, token).ConfigureAwait(false);
            }
            else
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(piece.Length);
                try
                {
                    var memory = buffer.AsMemory(0, piece.Length);
                    await top.ReadAsync(piece.Offset, memory, token).ConfigureAwait(false);
                    await baseImage.WriteAsync(piece.Offset, memory, token).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
            progress?.Report(new ImageProgress(Interlocked.Add(ref done, piece.Length), total));
        }).ConfigureAwait(false);
    }
}
