using System.Buffers;
using Qed.Storage;

namespace Qed.Formats.Qed.Maintenance;

/// <summary>
/// Online defragmentation: rewrites the file as header, L1, every L2 table in L1 order, then the data clusters in
/// guest order, and cuts the file after the last referenced cluster (leaked space is dropped).
/// </summary>
/// <remarks>
/// Concurrency. Each batch runs with the request gate paused (<see cref="RequestGate"/>). Every public request (read,
/// write, write-zeroes, discard, flush, layer map, copy-up) looks up its file offset and finishes its I/O at that
/// offset inside the gate, so when the pause begins no request holds a file offset from the mapping, and no allocation
/// is in flight (its reserved clusters are either linked in memory or leaked). Requests that arrive during the batch
/// wait at the gate and look their offsets up afresh after it, in the tables and index the batch has updated. So a
/// cluster the batch frees cannot be read or written through an old offset, and nothing else writes into a cluster
/// the batch reuses.
/// Crash safety. At the start of every batch the in-memory metadata is written back and synced, so "referenced"
/// means the same on disk and in memory. Every move is: copy to clusters no metadata references, sync, point the L2
/// entry (or the L1 entry, for a table) at the copy, sync; only after that second sync is the old location counted
/// as free. A crash at any instant therefore leaves each entry pointing at the old or the new copy, both intact: at
/// worst the file has leaked clusters, never lost data. Cancellation is honoured between batches only.
/// State: none beyond one pass's (<see cref="Pass"/>); everything it changes goes through the owners' methods.
/// </remarks>
internal sealed class Defragmenter(IBlockStorage file, QedGeometry geometry, L1Table l1, L2TableCache cache,
    EntryValidator validator, ClusterAllocator allocator, MetadataWriteBack writeBack, FailureLatch latch,
    RequestGate gate, long batchBytes)
{
    private readonly QedGeometry _g = geometry;

    /// <summary>
    /// How far a pass has got: items (in layout order) with a key below <see cref="Key"/> have been placed in slots
    /// below <see cref="Slot"/>. The pass only moves forward, so it ends even while requests keep allocating.
    /// </summary>
    private sealed class Pass
    {
        public long Key;
        public long Slot = -1;
        public long Placed;
        /// <summary>The map of the last batch, kept while no request changes a mapping (see the mapping version).</summary>
        public ReferenceMap? Map;
        public long Version;
        public int Next; // index in Map.Items of the first item past Key
    }

    /// <summary>Runs a whole pass in batches; see <see cref="QedImage.DefragmentAsync"/>.</summary>
    public async Task RunAsync(IProgress<(long Done, long Total)>? progress, CancellationToken cancellationToken)
    {
        var pass = new Pass();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (done, total, finished) = await gate.RunPausedAsync(() => BatchAsync(pass), cancellationToken).ConfigureAwait(false);
            progress?.Report((done, total));
            if (finished) return;
        }
    }

    /// <summary>One batch, with the gate paused. Returns progress and whether the pass is over.</summary>
    private async Task<(long Done, long Total, bool Finished)> BatchAsync(Pass pass)
    {
        latch.ThrowIfFailed();
        await writeBack.WriteBackAsync().ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);

        await cache.AwaitLoadsAsync().ConfigureAwait(false);
        var map = pass.Map;
        if (map is null || pass.Version != writeBack.MappingVersion || !map.IsCurrent(cache))
        {
            map = await ReferenceMap.BuildAsync(_g, l1, cache, validator, allocator, latch).ConfigureAwait(false);
            pass.Map = map;
            pass.Next = 0;
        }
        var items = map.Items;
        if (pass.Slot < 0) pass.Slot = map.HeaderClusters;

        // The window: the next items in layout order past the pass's position, a few MiB of them, given the next slots.
        int first = pass.Next;
        while (first < items.Count && items[first].Key < pass.Key) first++;
        if (first == items.Count)
        {
            await allocator.TruncateToAsync(_g.OffsetOf(map.End)).ConfigureAwait(false);
            pass.Map = null;
            return (items.Count, items.Count, true);
        }
        long cursor = pass.Slot;
        long bytes = 0;
        int last = first - 1;
        while (last + 1 < items.Count && (last < first || bytes + (long)items[last + 1].Clusters * _g.ClusterSize <= batchBytes))
        {
            var item = items[++last];
            bytes += (long)item.Clusters * _g.ClusterSize;
            for (long c = cursor; c < cursor + item.Clusters; c++)
                if (map.IsFixed(c)) cursor = c + 1; // the header and L1 stay put: skip past them
            item.Target = cursor;
            cursor += item.Clusters;
            items[last] = item;
        }
        long windowStart = pass.Slot, windowEnd = cursor;

        // 1. Evict whatever sits in the window's slots and does not belong there, to free clusters past the window.
        var where = map.Where;
        var evict = new List<int>();
        var seen = new HashSet<long>();
        for (long slot = windowStart; slot < windowEnd; slot++)
        {
            if (!map.Owners.TryGetValue(slot, out long owner) || !seen.Add(owner)) continue;
            int index = where[owner];
            if (items[index].Current != items[index].Target) evict.Add(index);
        }
        if (evict.Count > 0)
        {
            var moves = new List<(int Index, long To)>();
            foreach (int index in evict)
            {
                long to = -1;
                if (items[index].Clusters == 1 && map.Free.Count > 0 && map.Free.Max >= windowEnd)
                {
                    to = map.Free.GetViewBetween(windowEnd, map.Free.Max).Min; // the lowest hole past the window
                    map.Free.Remove(to);
                }
                if (to < 0) to = _g.ClusterOf(allocator.Reserve((long)items[index].Clusters * _g.ClusterSize));
                moves.Add((index, to));
            }
            await MoveAsync(map, items, moves).ConfigureAwait(false);
        }

        // 2. Move the window's items into their slots, which no metadata references now.
        var moveIn = new List<(int Index, long To)>();
        for (int i = first; i <= last; i++)
            if (items[i].Current != items[i].Target) moveIn.Add((i, items[i].Target));
        await MoveAsync(map, items, moveIn).ConfigureAwait(false);
        pass.Key = items[last].Key + 1;
        pass.Slot = windowEnd;
        pass.Next = last + 1;
        pass.Version = writeBack.MappingVersion; // our own moves included
        pass.Placed += last - first + 1;
        return (pass.Placed, pass.Placed + items.Count - last - 1, false);
    }

    /// <summary>
    /// Copies items to clusters nothing references, syncs, points their entries at the copies, syncs. Updates the
    /// items' current locations and, through their owners, the in-memory state the request paths use.
    /// </summary>
    private async Task MoveAsync(ReferenceMap map, List<ReferencedItem> items, List<(int Index, long To)> moves)
    {
        if (moves.Count == 0) return;
        int cs = _g.ClusterSize;
        var buffer = ArrayPool<byte>.Shared.Rent(cs);
        try
        {
            foreach (var (index, to) in moves)
            {
                var item = items[index];
                if (item.Owner < 0)
                {
                    await writeBack.CopyTableAsync(map.Tables[(int)(-item.Owner - 1)]!, _g.OffsetOf(to)).ConfigureAwait(false);
                }
                else
                {
                    // A cluster that is all hole (discarded: punched out, still mapped) stays a hole at its new home:
                    // the slot is punched, which also clears any stale bytes there, rather than filled with zeroes.
                    var (isData, run) = await file.GetAllocationAsync(_g.OffsetOf(item.Current), cs).ConfigureAwait(false);
                    if (!isData && run >= cs)
                    {
                        await file.ZeroRangeAsync(_g.OffsetOf(to), cs).ConfigureAwait(false);
                        continue;
                    }
                    var cluster = buffer.AsMemory(0, cs);
                    await file.ReadAsync(_g.OffsetOf(item.Current), cluster).ConfigureAwait(false);
                    await file.WriteAsync(_g.OffsetOf(to), cluster).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await file.FlushAsync().ConfigureAwait(false); // the copies are durable before anything points at them

        // Tables first, so the data entries below are written into each table's new home.
        var touched = new HashSet<L2Table>();
        foreach (var (index, to) in moves)
        {
            var item = items[index];
            if (item.Owner >= 0) continue;
            int l1Index = (int)(-item.Owner - 1);
            var table = map.Tables[l1Index]!;
            await writeBack.WriteL1EntryAsync(l1Index, (ulong)_g.OffsetOf(to)).ConfigureAwait(false);
            validator.RemoveTable(_g.OffsetOf(item.Current));
            validator.AddTable(l1Index, _g.OffsetOf(to));
            table.MoveTo((ulong)_g.OffsetOf(to));
            map.Move(item, to);
            item.Current = to;
            items[index] = item;
        }
        foreach (var (index, to) in moves)
        {
            var item = items[index];
            if (item.Owner < 0) continue;
            var table = map.Tables[(int)(item.Owner >> _g.EntryBits)]!;
            table.SetEntries((int)(item.Owner & (_g.EntriesPerTable - 1)), 1, (ulong)_g.OffsetOf(to), 0, markDirty: false);
            touched.Add(table);
            map.Move(item, to);
            item.Current = to;
            items[index] = item;
        }
        foreach (var table in touched)
            await writeBack.WriteWholeTableAsync(table).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false); // only now are the old locations free
    }
}
