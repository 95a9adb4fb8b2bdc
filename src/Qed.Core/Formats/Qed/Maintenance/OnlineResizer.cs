using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Formats.Qed.Maintenance;

/// <summary>
/// Online resize: grows and shrinks an open image with the request gate paused (<see cref="RequestGate"/>), so no
/// request sees a size and a mapping that disagree, and none holds the file offset of a cluster the shrink frees.
/// </summary>
/// <remarks>
/// Invariants: the new size is durable in the header before requests see it (<c>publishSize</c> runs after the
/// header write); a grown range reads as zeroes before the header grows; a shrink drops every mapping past the new
/// end, durably, before the header shrinks, and punches freed clusters only once nothing on disk or in memory points
/// at them. A crash at any point leaves a consistent image of the old or the new size holding every byte below the
/// smaller of the two (at worst with leaked clusters). State: none; everything goes through the owners' methods.
/// </remarks>
internal sealed class OnlineResizer(IBlockStorage file, QedGeometry geometry, HeaderWriter header, L1Table l1,
    L2TableCache cache, EntryValidator validator, ClusterAllocator allocator, MetadataWriteBack writeBack,
    ClusterWriter writer, BackingChain backing, FailureLatch latch, RequestGate gate, Action<long> publishSize)
{
    private readonly QedGeometry _g = geometry;

    /// <summary>Resizes; see <see cref="QedImage.ResizeAsync"/>. <paramref name="currentSize"/> reads the size now.</summary>
    public async Task ResizeAsync(long newSize, bool allowShrink, Func<long> currentSize, CancellationToken cancellationToken)
    {
        latch.ThrowIfFailed();
        var h = header.Current;
        long max = QedHeader.MaxImageSize(h.ClusterSize, h.TableSize);
        if (newSize < 0 || newSize % 512 != 0 || newSize > max)
            throw new ArgumentException($"Invalid image size specified: {newSize} must be a multiple of 512 and at most {max}", nameof(newSize));
        await gate.PauseAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            latch.ThrowIfFailed();
            long old = currentSize();
            if (newSize == old) return;
            if (newSize < old && !allowShrink)
                throw new ArgumentException("Use the --shrink option to perform a shrink operation (data past the new end is lost)", nameof(allowShrink));
            if (newSize > old) await GrowPausedAsync(old, newSize).ConfigureAwait(false);
            else await ShrinkPausedAsync(old, newSize).ConfigureAwait(false);
        }
        finally
        {
            gate.Resume();
        }
    }

    private async Task GrowPausedAsync(long old, long newSize)
    {
        // The grown range must read as zeroes: the rest of the old last cluster may hold bytes past the old end, and a
        // backing file longer than the old size would show through unallocated clusters. Made durable before the
        // header grows, so a crash never shows a larger image with that old content in it.
        long zeroEnd = Math.Min(newSize, Math.Max(_g.RoundUp(old), backing.Current?.Size ?? 0));
        if (zeroEnd > old)
        {
            await writer.WriteZeroesAsync(old, zeroEnd - old, CancellationToken.None).ConfigureAwait(false);
            await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        await WriteSizeAsync(newSize).ConfigureAwait(false);
    }

    private async Task ShrinkPausedAsync(long old, long newSize)
    {
        long cs = _g.ClusterSize;
        // The new last cluster's bytes past the new end are zeroed, so a later grow reads zeroes there.
        long keepEnd = Math.Min(old, _g.RoundUp(newSize));
        if (keepEnd > newSize) await writer.WriteZeroesAsync(newSize, keepEnd - newSize, CancellationToken.None).ConfigureAwait(false);
        await writeBack.WriteBackAsync().ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
        await cache.AwaitLoadsAsync().ConfigureAwait(false);

        // Drop every mapping past the new end: partial tables get their tail entries cleared, tables wholly past it
        // are unlinked. Durable before the header shrinks, so a crash never leaves mappings beyond the size that a
        // later grow would expose.
        long firstDropped = _g.ClusterOf(_g.RoundUp(newSize));
        writeBack.NoteMappingChanged();
        var freed = new List<(long Offset, long Length)>();
        for (int i = (int)(firstDropped >> _g.EntryBits); i < l1.Length; i++)
        {
            if (l1[i] == 0) continue;
            var table = await cache.GetAsync(i, CancellationToken.None).ConfigureAwait(false);
            if (table is null) continue;
            long tableFirst = (long)i << _g.EntryBits;
            int from = (int)Math.Max(0, firstDropped - tableFirst);
            bool changed = false;
            for (int j = from; j < table.Count; j++)
            {
                ulong entry = table.Entry(j);
                if (entry == 0) continue;
                if (validator.Classify(table, j, entry) == ExtentKind.Data) freed.Add(((long)entry, cs));
                if (from > 0) table.SetEntries(j, 1, 0, 0, markDirty: false);
                changed = true;
            }
            if (from == 0)
            {
                await writeBack.WriteL1EntryAsync(i, 0).ConfigureAwait(false);
                freed.Add(((long)table.FileOffset, _g.TableBytes));
                cache.Drop(i);
                validator.RemoveTable((long)table.FileOffset);
            }
            else if (changed)
            {
                await writeBack.WriteWholeTableAsync(table).ConfigureAwait(false);
            }
        }
        await file.FlushAsync().ConfigureAwait(false);
        await WriteSizeAsync(newSize).ConfigureAwait(false);

        // Nothing points at the freed clusters any more, on disk or in memory, and no request is in flight (the gate
        // is paused): punching them out cannot hit data anyone can still reach. Then cut the unreferenced tail.
        freed.Sort();
        for (int i = 0; i < freed.Count;)
        {
            var (offset, length) = freed[i++];
            while (i < freed.Count && freed[i].Offset == offset + length) length += freed[i++].Length; // one punch per run
            await file.ZeroRangeAsync(offset, length, CancellationToken.None).ConfigureAwait(false);
        }
        var map = await ReferenceMap.BuildAsync(_g, l1, cache, validator, allocator, latch).ConfigureAwait(false);
        await allocator.TruncateToAsync(_g.OffsetOf(map.End)).ConfigureAwait(false);
    }

    /// <summary>Writes the guest size into the header and syncs it, then makes it the size requests check against.</summary>
    private async Task WriteSizeAsync(long newSize)
    {
        await header.WriteSizeAsync(newSize).ConfigureAwait(false);
        publishSize(newSize);
    }
}
