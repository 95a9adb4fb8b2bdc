using System.Buffers;

namespace Qed.Operations;

/// <summary>
/// Copies the guest content of one image into another of any format (qemu-img convert's data phase). Only what is
/// needed is written: ranges the source's allocation map reports as zero are skipped, all-zero blocks inside data are
/// detected and skipped too, so the target stays sparse. Several chunks are copied concurrently, except when salvaging:
/// then one at a time, so that failures are reported in offset order (an allocation query's failure before the read
/// of the same sector), as qemu-img prints them.
/// </summary>
/// <remarks>
/// An I/O error that is not salvaged fails the copy with an <see cref="IOException"/> in qemu-img's words, naming
/// where: "error while reading block status at offset N: ..." (N the start of the failed allocation query) or
/// "error while reading at byte N: ..." (N the start of the failed chunk read), the original error as its inner one.
/// </remarks>
internal static class ConvertOperation
{
    private enum BlockAction { Skip, Data, Zero }

    private enum Mode { SkipZeroes, WriteDifferences, WriteAll }

    private readonly record struct Chunk(long Offset, int Length, bool SourceIsZero);

    /// <summary>
    /// Copies all of <paramref name="source"/> into <paramref name="target"/> (which must be at least as large) and
    /// flushes the target.
    /// </summary>
    /// <exception cref="ArgumentException">The target is smaller than the source, or the options are invalid.</exception>
    /// <exception cref="IOException">A read of the source or its allocation failed and is not salvaged (see remarks).</exception>
    public static async Task CopyAsync(DiskImage source, DiskImage target, ConvertOptions? options = null,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        options ??= new ConvertOptions();
        if (target.Size < source.Size)
            throw new ArgumentException($"The target '{target.Name}' ({target.Size} bytes) is smaller than the source '{source.Name}' ({source.Size} bytes)");
        if (options.MinSparse < 0 || options.ChunkSize <= 0 || options.Parallelism <= 0 ||
            (options.MinSparse > 0 && options.ChunkSize % options.MinSparse != 0))
            throw new ArgumentException("Invalid convert options: the chunk size must be a positive multiple of the sparse size");

        long total = source.Size, done = 0;
        progress?.Report(new ImageProgress(0, total));
        void Advance(long bytes) => progress?.Report(new ImageProgress(Interlocked.Add(ref done, bytes), total));

        // A zeroed target already holds every zero range; with a backing file it does not, whatever the caller says.
        // Full allocation (MinSparse 0) writes everything, so it never needs to look at the target.
        var mode = options.MinSparse == 0 ? Mode.WriteAll
            : options.TargetIsZeroed && target.Backing is null ? Mode.SkipZeroes
            : Mode.WriteDifferences;
        var onStatusError = options.OnBlockStatusError;
        if (onStatusError != null)
        {
            // qemu-img's first pass (counting what it will copy): the same queries, so the same failures, reported.
            for (long at = 0; at < source.Size;)
                at += (await GetExtentAsync(source, at, onStatusError, cancellationToken).ConfigureAwait(false)).Length;
        }
        var chunks = ChunksAsync(source, options.ChunkSize, mode == Mode.SkipZeroes, Advance, onStatusError, cancellationToken);
        if (options.Salvage)
        {
            await foreach (var chunk in chunks.ConfigureAwait(false))
            {
                await CopyChunkAsync(source, target, chunk, mode, options.MinSparse, options.OnReadError, cancellationToken).ConfigureAwait(false);
                Advance(chunk.Length);
            }
        }
        else
        {
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = cancellationToken };
            await Parallel.ForEachAsync(chunks, parallel, async (chunk, ct) =>
            {
                await CopyChunkAsync(source, target, chunk, mode, options.MinSparse, options.OnReadError, ct).ConfigureAwait(false);
                Advance(chunk.Length);
            }).ConfigureAwait(false);
        }
        await target.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The layer of <paramref name="source"/>'s chain stored in the file <paramref name="targetPath"/> names (by any
    /// name: same device and inode, so hard links and symlinks count), or null. A target that is such a file must not
    /// be created or written: that destroys the data being copied. Check before the target is touched.
    /// </summary>
    public static DiskImage? FindLayerInFile(DiskImage source, string targetPath)
    {
        ArgumentNullException.ThrowIfNull(source);
        for (var layer = source; layer != null; layer = layer.Backing)
            if (Storage.FileStorage.IsSameFile(layer.Name, targetPath)) return layer;
        return null;
    }

    /// <summary>
    /// The source split at chunk boundaries; zero ranges are left out when the target needs nothing there. Each run is
    /// queried only after the chunks before it are taken, so that with salvage a failure is reported where it lies in
    /// the copy (runs are not merged, which would query ahead).
    /// </summary>
    private static async IAsyncEnumerable<Chunk> ChunksAsync(DiskImage source, int chunkSize, bool skipZeroes, Action<long> skipped,
        Action<long, IOException>? onStatusError, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        for (long at = 0; at < source.Size;)
        {
            var extent = await GetExtentAsync(source, at, onStatusError, ct).ConfigureAwait(false);
            at += extent.Length;
            bool zero = extent.Zero && !extent.Data;
            if (zero && skipZeroes)
            {
                skipped(extent.Length);
                continue;
            }
            long offset = extent.Offset, end = extent.Offset + extent.Length;
            while (offset < end)
            {
                // Chunks end on chunk-size boundaries so that they line up with clusters.
                long next = Math.Min(end, (offset / chunkSize + 1) * chunkSize);
                yield return new Chunk(offset, (int)(next - offset), zero);
                offset = next;
            }
        }
    }

    private static async Task CopyChunkAsync(DiskImage source, DiskImage target, Chunk chunk, Mode mode, int minSparse,
        Action<long, IOException>? onReadError, CancellationToken ct)
    {
        // Zeroes over a target that already reads as zeroes there (unallocated over a sparse base, zero clusters):
        // nothing to do, and nothing to read; this keeps -B over large sparse images cheap.
        if (chunk.SourceIsZero && mode == Mode.WriteDifferences && await ReadsAsZeroesAsync(target, chunk.Offset, chunk.Length, ct).ConfigureAwait(false))
            return;
        byte[] src = ArrayPool<byte>.Shared.Rent(chunk.Length);
        byte[]? dst = mode == Mode.WriteDifferences ? ArrayPool<byte>.Shared.Rent(chunk.Length) : null;
        try
        {
            var srcMem = src.AsMemory(0, chunk.Length);
            if (chunk.SourceIsZero) srcMem.Span.Clear(); // the pool's buffers hold stale bytes
            else if (onReadError is null)
            {
                try { await source.ReadAsync(chunk.Offset, srcMem, ct).ConfigureAwait(false); }
                catch (IOException e) { throw new IOException($"error while reading at byte {chunk.Offset}: {e.Message}", e); }
            }
            else await SalvageReadAsync(source, chunk.Offset, srcMem, onReadError, ct).ConfigureAwait(false);
            Memory<byte> dstMem = default;
            if (dst != null)
            {
                dstMem = dst.AsMemory(0, chunk.Length);
                await target.ReadAsync(chunk.Offset, dstMem, ct).ConfigureAwait(false);
            }

            // Walk blocks at absolute multiples of the sparse size, merging neighbours with the same action.
            if (mode == Mode.WriteAll)
            {
                await target.WriteAsync(chunk.Offset, srcMem, ct).ConfigureAwait(false);
                return;
            }
            int block = minSparse;
            int runStart = 0;
            var runAction = BlockAction.Skip;
            int pos = 0;
            while (pos < chunk.Length)
            {
                long abs = chunk.Offset + pos;
                int len = (int)Math.Min(chunk.Length - pos, block - abs % block);
                var action = Decide(srcMem.Span.Slice(pos, len), dst is null ? default : dstMem.Span.Slice(pos, len), dst is null);
                if (action != runAction)
                {
                    await ApplyAsync(target, chunk.Offset + runStart, srcMem[runStart..pos], runAction, ct).ConfigureAwait(false);
                    runStart = pos;
                    runAction = action;
                }
                pos += len;
            }
            await ApplyAsync(target, chunk.Offset + runStart, srcMem[runStart..pos], runAction, ct).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(src);
            if (dst != null) ArrayPool<byte>.Shared.Return(dst);
        }
    }

    /// <summary>
    /// The source's run at <paramref name="offset"/> (to the end at most). A failed query fails the copy in qemu-img's
    /// words, unless salvaging: then it is narrowed (halved, on sector boundaries) until it succeeds or covers one
    /// sector, which is reported and taken as data.
    /// </summary>
    private static async ValueTask<ChainExtent> GetExtentAsync(DiskImage source, long offset, Action<long, IOException>? onStatusError, CancellationToken ct)
    {
        long length = source.Size - offset;
        while (true)
        {
            try
            {
                return await AllocationMap.GetExtentAsync(source, offset, length, ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                if (onStatusError is null) throw new IOException($"error while reading block status at offset {offset}: {e.Message}", e);
                long sectorEnd = (offset / SectorSize + 1) * SectorSize;
                if (offset + length <= sectorEnd)
                {
                    onStatusError(offset, e);
                    return new ChainExtent(offset, length, 0, true, false, true, -1, source);
                }
                length = Math.Max(sectorEnd, (offset + length / 2) / SectorSize * SectorSize) - offset;
            }
        }
    }

    /// <summary>The unit --salvage retries reads and allocation queries in (observed on qemu-img 7.2).</summary>
    private const int SectorSize = 512;

    /// <summary>Reads <paramref name="buffer"/>; if that fails, sector by sector, failed sectors left as zeroes and reported.</summary>
    private static async ValueTask SalvageReadAsync(DiskImage source, long offset, Memory<byte> buffer, Action<long, IOException> onReadError, CancellationToken ct)
    {
        try
        {
            await source.ReadAsync(offset, buffer, ct).ConfigureAwait(false);
            return;
        }
        catch (IOException) { }
        for (int at = 0; at < buffer.Length; at += SectorSize)
        {
            var part = buffer.Slice(at, Math.Min(SectorSize, buffer.Length - at));
            try { await source.ReadAsync(offset + at, part, ct).ConfigureAwait(false); }
            catch (IOException e)
            {
                part.Span.Clear();
                onReadError(offset + at, e);
            }
        }
    }

    /// <summary>Whether the allocation map says [offset, offset+length) of the image reads as zeroes without data.</summary>
    private static async ValueTask<bool> ReadsAsZeroesAsync(DiskImage image, long offset, long length, CancellationToken ct)
    {
        long end = offset + length;
        while (offset < end)
        {
            var extent = await AllocationMap.GetExtentAsync(image, offset, end - offset, ct).ConfigureAwait(false);
            if (!extent.Zero || extent.Data) return false;
            offset += extent.Length;
        }
        return true;
    }

    private static BlockAction Decide(ReadOnlySpan<byte> src, ReadOnlySpan<byte> dst, bool targetIsZero)
    {
        if (targetIsZero)
            return src.IndexOfAnyExcept((byte)0) < 0 ? BlockAction.Skip : BlockAction.Data;
        if (src.SequenceEqual(dst)) return BlockAction.Skip;
        // Zeroes over different content: a zero cluster (or hole) rather than data.
        return src.IndexOfAnyExcept((byte)0) < 0 ? BlockAction.Zero : BlockAction.Data;
    }

    private static ValueTask ApplyAsync(DiskImage target, long offset, ReadOnlyMemory<byte> data, BlockAction action, CancellationToken ct) =>
        data.Length == 0 ? ValueTask.CompletedTask : action switch
        {
            BlockAction.Data => target.WriteAsync(offset, data, ct),
            BlockAction.Zero => target.WriteZeroesAsync(offset, data.Length, ct),
            _ => ValueTask.CompletedTask,
        };
}
