using System.Buffers;

namespace Qed;

// Online defragmentation: rewrites the file as header, L1, every L2 table in L1 order, then the data clusters in guest
// order, and cuts the file after the last referenced cluster (leaked space is dropped).
//
// Concurrency. Each batch runs with the request gate paused (RequestGate.cs). Every public request (read, write,
// write-zeroes, discard, flush, layer map, copy-up) looks up its file offset and finishes its I/O at that offset inside
// the gate, so when PauseAsync returns no request holds a file offset from the mapping, and no allocation is in flight
// (its reserved clusters are either linked in memory or leaked). Requests that arrive during the batch wait at the gate
// and look their offsets up afresh after it, in the tables and index the batch has updated. So a cluster the batch
// frees cannot be read or written through an old offset, and nothing else writes into a cluster the batch reuses.
//
// Crash safety. At the start of every batch the in-memory metadata is written back and synced, so "referenced" means
// the same on disk and in memory. Every move is: copy to clusters no metadata references, sync, point the L2 entry (or
// the L1 entry, for a table) at the copy, sync; only after that second sync is the old location counted as free.
// A crash at any instant therefore leaves each entry pointing at the old or the new copy, both intact: at worst the
// file has leaked clusters, never lost data. Cancellation is honoured between batches only.
public sealed partial class QedImage
{
    /// <summary>Moves per pause, in bytes: small enough that requests waiting at the gate make progress. Tests lower it.</summary>
    internal long DefragBatchBytes { get; set; } = 4L << 20;

    /// <summary>
    /// Defragments the open image while other requests go on: L2 tables right after the L1 table, then data clusters
    /// in guest order, so reading the image in guest order reads the file sequentially; the file is then truncated to
    /// its referenced clusters. Works in short batches during which requests wait. On an image nobody writes to
    /// meanwhile the result is exact: no gap, no leak. Concurrent writes are kept but may land outside the order: a
    /// cluster allocated behind the pass's position stays where it was put, and a cluster freed behind it stays a hole.
    /// </summary>
    /// <param name="progress">Receives (clusters placed, clusters referenced) after every batch.</param>
    /// <param name="cancellationToken">Stops between batches; the image is consistent and no data is lost.</param>
    /// <exception cref="ImageFormatException">The image is corrupt (check and repair it first); nothing is moved.</exception>
    public async Task DefragmentAsync(IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        ThrowIfFailed();
        var pass = new DefragPass();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (done, total, finished) = await _gate.RunPausedAsync(() => DefragBatchAsync(pass), cancellationToken).ConfigureAwait(false);
            progress?.Report((done, total));
            if (finished) return;
        }
    }

    /// <summary>
    /// How far a pass has got: items (in layout order) with a key below <see cref="Key"/> have been placed in slots
    /// below <see cref="Slot"/>. The pass only moves forward, so it ends even while requests keep allocating.
    /// </summary>
    private sealed class DefragPass
    {
        public long Key;
        public long Slot = -1;
        public long Placed;
        /// <summary>The map of the last batch, kept while no request changes a mapping (see _mappingVersion).</summary>
        public DefragLayout? Layout;
        public long Version;
        public int Next; // index in Layout.Items of the first item past Key
    }

    /// <summary>
    /// Bumped whenever a mapping changes (an L2 entry committed, an L1 entry written, a shrink dropping entries), so a
    /// defrag pass can tell that its map is still exact and need not walk every table again for every batch.
    /// </summary>
    private long _mappingVersion;

    /// <summary>
    /// Something referenced: an L2 table (Owner = -(L1 index + 1)) or a data cluster (Owner = guest cluster). Key is
    /// its place in the target layout: tables by L1 index, then data in guest order.
    /// </summary>
    private struct DefragItem
    {
        public long Owner;
        public long Key;
        public long Current; // cluster index
        public long Target;  // cluster index, or -1 when the pass leaves it where it is
        public int Clusters;
    }

    /// <summary>One batch, with the gate paused. Returns progress and whether the pass is over.</summary>
    private async Task<(long Done, long Total, bool Finished)> DefragBatchAsync(DefragPass pass)
    {
        ThrowIfFailed();
        await WriteBackMetadataAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        await AwaitTableLoadsAsync().ConfigureAwait(false);
        var layout = pass.Layout;
        if (layout is null || pass.Version != Volatile.Read(ref _mappingVersion) || !IsCacheOf(layout))
        {
            layout = await MapReferencesAsync().ConfigureAwait(false);
            pass.Layout = layout;
            pass.Next = 0;
        }
        var items = layout.Items;
        if (pass.Slot < 0) pass.Slot = layout.HeaderClusters;

        // The window: the next items in layout order past the pass's position, a few MiB of them, given the next slots.
        int first = pass.Next;
        while (first < items.Count && items[first].Key < pass.Key) first++;
        if (first == items.Count)
        {
            long end = Math.Max(layout.HeaderClusters, layout.L1End);
            foreach (long cluster in layout.Owners.Keys) end = Math.Max(end, cluster + 1);
            await TruncateToAsync(end << _clusterBits).ConfigureAwait(false);
            pass.Layout = null;
            return (items.Count, items.Count, true);
        }
        long cursor = pass.Slot;
        long bytes = 0;
        int last = first - 1;
        while (last + 1 < items.Count && (last < first || bytes + (long)items[last + 1].Clusters * _clusterSize <= DefragBatchBytes))
        {
            var item = items[++last];
            bytes += (long)item.Clusters * _clusterSize;
            for (long c = cursor; c < cursor + item.Clusters; c++)
                if (layout.IsFixed(c)) cursor = c + 1; // the header and L1 stay put: skip past them
            item.Target = cursor;
            cursor += item.Clusters;
            items[last] = item;
        }
        long windowStart = pass.Slot, windowEnd = cursor;

        // 1. Evict whatever sits in the window's slots and does not belong there, to free clusters past the window.
        var where = layout.Where;
        var evict = new List<int>();
        var seen = new HashSet<long>();
        for (long slot = windowStart; slot < windowEnd; slot++)
        {
            if (!layout.Owners.TryGetValue(slot, out long owner) || !seen.Add(owner)) continue;
            int index = where[owner];
            if (items[index].Current != items[index].Target) evict.Add(index);
        }
        if (evict.Count > 0)
        {
            var moves = new List<(int Index, long To)>();
            foreach (int index in evict)
            {
                long to = -1;
                if (items[index].Clusters == 1 && layout.Free.Count > 0 && layout.Free.Max >= windowEnd)
                {
                    to = layout.Free.GetViewBetween(windowEnd, layout.Free.Max).Min; // the lowest hole past the window
                    layout.Free.Remove(to);
                }
                if (to < 0)
                    lock (_metaLock) to = Reserve((long)items[index].Clusters * _clusterSize) >> _clusterBits;
                moves.Add((index, to));
            }
            await MoveAsync(layout, items, moves).ConfigureAwait(false);
        }

        // 2. Move the window's items into their slots, which no metadata references now.
        var moveIn = new List<(int Index, long To)>();
        for (int i = first; i <= last; i++)
            if (items[i].Current != items[i].Target) moveIn.Add((i, items[i].Target));
        await MoveAsync(layout, items, moveIn).ConfigureAwait(false);
        pass.Key = items[last].Key + 1;
        pass.Slot = windowEnd;
        pass.Next = last + 1;
        pass.Version = Volatile.Read(ref _mappingVersion); // our own moves included
        pass.Placed += last - first + 1;
        return (pass.Placed, pass.Placed + items.Count - last - 1, false);
    }

    /// <summary>
    /// Copies items to clusters nothing references, syncs, points their entries at the copies, syncs. Updates the
    /// items' current locations and the in-memory state (tables, L1, table index) the request paths use.
    /// </summary>
    private async Task MoveAsync(DefragLayout layout, List<DefragItem> items, List<(int Index, long To)> moves)
    {
        if (moves.Count == 0) return;
        var buffer = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            foreach (var (index, to) in moves)
            {
                var item = items[index];
                if (item.Owner < 0)
                {
                    var table = layout.Tables[(int)(-item.Owner - 1)]!;
                    await _file.WriteAsync(to << _clusterBits, EncodeEntries(table.Entries, 0, _entriesPerTable)).ConfigureAwait(false);
                }
                else
                {
                    // A cluster that is all hole (discarded: punched out, still mapped) stays a hole at its new home:
                    // the slot is punched, which also clears any stale bytes there, rather than filled with zeroes.
                    var (isData, run) = await _file.GetAllocationAsync(item.Current << _clusterBits, _clusterSize).ConfigureAwait(false);
                    if (!isData && run >= _clusterSize)
                    {
                        await _file.ZeroRangeAsync(to << _clusterBits, _clusterSize).ConfigureAwait(false);
                        continue;
                    }
                    var cluster = buffer.AsMemory(0, _clusterSize);
                    await _file.ReadAsync(item.Current << _clusterBits, cluster).ConfigureAwait(false);
                    await _file.WriteAsync(to << _clusterBits, cluster).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await _file.FlushAsync().ConfigureAwait(false); // the copies are durable before anything points at them

        // Tables first, so the data entries below are written into each table's new home.
        var touched = new HashSet<L2Table>();
        foreach (var (index, to) in moves)
        {
            var item = items[index];
            if (item.Owner >= 0) continue;
            int l1Index = (int)(-item.Owner - 1);
            var table = layout.Tables[l1Index]!;
            await WriteL1EntryAsync(l1Index, (ulong)(to << _clusterBits)).ConfigureAwait(false);
            for (long c = item.Current; c < item.Current + item.Clusters; c++) _tableClusters.TryRemove(c, out _);
            for (long c = to; c < to + item.Clusters; c++) _tableClusters[c] = l1Index;
            lock (table) table.FileOffset = (ulong)(to << _clusterBits);
            layout.Move(item, to);
            item.Current = to;
            items[index] = item;
        }
        foreach (var (index, to) in moves)
        {
            var item = items[index];
            if (item.Owner < 0) continue;
            var table = layout.Tables[(int)(item.Owner >> _entryBits)]!;
            lock (table) Volatile.Write(ref table.Entries[item.Owner & (_entriesPerTable - 1)], (ulong)(to << _clusterBits));
            touched.Add(table);
            layout.Move(item, to);
            item.Current = to;
            items[index] = item;
        }
        foreach (var table in touched)
        {
            byte[] bytes;
            lock (table) bytes = EncodeEntries(table.Entries, 0, _entriesPerTable);
            await _file.WriteAsync((long)table.FileOffset, bytes).ConfigureAwait(false);
        }
        await _file.FlushAsync().ConfigureAwait(false); // only now are the old locations free
    }

    /// <summary>Every referenced cluster and who owns it, the items in layout order, and the holes.</summary>
    private sealed class DefragLayout
    {
        public required L2Table?[] Tables;
        public required List<DefragItem> Items;
        public readonly Dictionary<long, long> Owners = new(); // cluster index -> owner
        public readonly Dictionary<long, int> Where = new();   // owner -> index in Items
        public readonly SortedSet<long> Free = new();          // unreferenced clusters inside the file, header and L1 aside
        public long HeaderClusters, L1First, L1End;

        public bool IsFixed(long cluster) => cluster < HeaderClusters || (cluster >= L1First && cluster < L1End);

        public void Move(DefragItem item, long to)
        {
            for (long c = item.Current; c < item.Current + item.Clusters; c++) { Owners.Remove(c); Free.Add(c); }
            for (long c = to; c < to + item.Clusters; c++) { Owners[c] = item.Owner; Free.Remove(c); }
        }
    }

    /// <summary>Whether the tables of <paramref name="layout"/> are the objects the cache holds (or not cached at all).</summary>
    private bool IsCacheOf(DefragLayout layout)
    {
        for (int i = 0; i < layout.Tables.Length; i++)
        {
            var cached = Volatile.Read(ref _ready[i]);
            if (cached != null && cached != layout.Tables[i]) return false;
        }
        return true;
    }

    /// <summary>
    /// Waits for table loads still running: a request cancelled while waiting for one has left the gate, but the load
    /// goes on and would install a copy read from disk while the batch rewrites it.
    /// </summary>
    private async Task AwaitTableLoadsAsync()
    {
        Task[] loads;
        lock (_metaLock) loads = _tables.Values.Where(t => !t.IsCompleted).ToArray();
        if (loads.Length == 0) return;
        try { await Task.WhenAll(loads).ConfigureAwait(false); }
        catch (Exception) { } // a failed load is the request's error; the map walk below loads again and reports it
    }

    /// <summary>
    /// Walks L1 and every L2 table (validating each entry) and lists what is referenced, in layout order: tables in L1
    /// order, then data in guest order. Refuses an image with a cluster referenced twice.
    /// </summary>
    private async Task<DefragLayout> MapReferencesAsync()
    {
        var layout = new DefragLayout { Tables = new L2Table?[_l1.Length], Items = new List<DefragItem>() };
        await AwaitTableLoadsAsync().ConfigureAwait(false);
        layout.HeaderClusters = _headerBytes >> _clusterBits;
        layout.L1First = (long)_header.L1TableOffset >> _clusterBits;
        layout.L1End = layout.L1First + _header.TableSize;
        int tableClusters = (int)_header.TableSize;

        void Claim(long cluster, long owner, string what, long at)
        {
            if (layout.IsFixed(cluster) || !layout.Owners.TryAdd(cluster, owner))
                throw Corrupt($"QED {what} (file offset 0x{at:x}) refers to cluster 0x{cluster << _clusterBits:x}, which is already in use",
                    what, at);
        }

        for (int i = 0; i < _l1.Length; i++)
        {
            if (Volatile.Read(ref _l1[i]) == 0) continue;
            var table = await GetTableAsync(i, CancellationToken.None).ConfigureAwait(false); // validates the offset
            if (table is null) continue;
            layout.Tables[i] = table;
            long at = (long)table.FileOffset >> _clusterBits;
            for (long c = at; c < at + tableClusters; c++) Claim(c, -(i + 1), $"L1[{i}]", L1EntryFileOffset(i));
            layout.Items.Add(new DefragItem { Owner = -(i + 1), Key = i, Current = at, Target = -1, Clusters = tableClusters });
        }
        for (int i = 0; i < _l1.Length; i++)
        {
            var table = layout.Tables[i];
            if (table is null) continue;
            for (int j = 0; j < _entriesPerTable; j++)
            {
                ulong entry = Volatile.Read(ref table.Entries[j]);
                if (Classify(table, j, entry) != ExtentKind.Data) continue;
                long owner = ((long)i << _entryBits) + j;
                long cluster = (long)(entry >> _clusterBits);
                Claim(cluster, owner, $"L2[{i}][{j}]", (long)table.FileOffset + 8L * j);
                layout.Items.Add(new DefragItem { Owner = owner, Key = _l1.Length + owner, Current = cluster, Target = -1, Clusters = 1 });
            }
        }
        for (int i = 0; i < layout.Items.Count; i++) layout.Where[layout.Items[i].Owner] = i;
        long fileClusters = Volatile.Read(ref _fileEnd) >> _clusterBits;
        for (long c = layout.HeaderClusters; c < fileClusters; c++)
            if (!layout.IsFixed(c) && !layout.Owners.ContainsKey(c)) layout.Free.Add(c);
        return layout;
    }

    /// <summary>
    /// Cuts the file at <paramref name="end"/>, past which nothing is referenced (metadata is durable, the gate is
    /// paused), and syncs; from then on new clusters come from there and read as zeroes until written.
    /// </summary>
    private async Task TruncateToAsync(long end)
    {
        lock (_metaLock)
        {
            if (_fileEnd < end) return; // cannot happen: every referenced cluster lies below _fileEnd
            Volatile.Write(ref _fileEnd, end);
            _extendedTo = end;
            _growAheadTo = 0;
        }
        if (_file.Length != end)
        {
            await _file.SetLengthAsync(end).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }
        lock (_metaLock) _staleEnd = Math.Min(_staleEnd, end);
    }

    /// <summary>
    /// Test hook: describes an L1 or in-memory L2 entry that points into [offset, offset+length), or null. The stress
    /// test calls it whenever the storage is asked to punch or cut that range: nothing may still point there.
    /// Tables not in the cache are not looked at (the test keeps them all cached).
    /// </summary>
    internal string? TestFindReference(long offset, long length)
    {
        ulong low = (ulong)offset, high = (ulong)(offset + length);
        for (int i = 0; i < _l1.Length; i++)
        {
            ulong t = Volatile.Read(ref _l1[i]);
            if (t != 0 && t < high && t + (ulong)_tableBytes > low) return $"L1[{i}] = 0x{t:x}";
            var table = Volatile.Read(ref _ready[i]);
            if (table is null) continue;
            for (int j = 0; j < _entriesPerTable; j++)
            {
                ulong e = Volatile.Read(ref table.Entries[j]);
                if (e > ZeroClusterEntry && e < high && e + (ulong)_clusterSize > low) return $"L2[{i}][{j}] = 0x{e:x}";
            }
        }
        return null;
    }
}
