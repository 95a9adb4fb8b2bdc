using Qed.Format;

namespace Qed;

// Online resize: grow and shrink an open image with the request gate paused (RequestGate.cs), so no request sees a
// size and a mapping that disagree, and none holds the file offset of a cluster the shrink frees.
public sealed partial class QedImage
{
    /// <summary>
    /// Changes the guest size of the open image while it stays in use (requests wait for the few steps it takes).
    /// Growing makes the new range read as zeroes. Shrinking drops the mappings past the new end, zeroes the rest of
    /// the new last cluster, punches out the freed clusters and truncates the file after its last referenced cluster.
    /// A crash at any point leaves a consistent image of the old or the new size holding every byte below the smaller
    /// of the two (at worst with leaked clusters).
    /// </summary>
    /// <param name="newSize">The new guest size: a multiple of 512, at most what the table geometry addresses.</param>
    /// <param name="allowShrink">Must be true when <paramref name="newSize"/> is below the current size.</param>
    /// <param name="cancellationToken">Cancels while waiting for the requests in flight to drain.</param>
    /// <exception cref="ArgumentException">The size is invalid, or smaller without <paramref name="allowShrink"/>.</exception>
    public async Task ResizeAsync(long newSize, bool allowShrink, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        ThrowIfFailed();
        long max = QedHeader.MaxImageSize(_header.ClusterSize, _header.TableSize);
        if (newSize < 0 || newSize % 512 != 0 || newSize > max)
            throw new ArgumentException($"Invalid image size specified: {newSize} must be a multiple of 512 and at most {max}", nameof(newSize));
        await _gate.PauseAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFailed();
            long old = Volatile.Read(ref _size);
            if (newSize == old) return;
            if (newSize < old && !allowShrink)
                throw new ArgumentException("Use the --shrink option to perform a shrink operation (data past the new end is lost)", nameof(allowShrink));
            if (newSize > old) await GrowPausedAsync(old, newSize).ConfigureAwait(false);
            else await ShrinkPausedAsync(old, newSize).ConfigureAwait(false);
        }
        finally
        {
            _gate.Resume();
        }
    }

    private async Task GrowPausedAsync(long old, long newSize)
    {
        // The grown range must read as zeroes: the rest of the old last cluster may hold bytes past the old end, and a
        // backing file longer than the old size would show through unallocated clusters. Made durable before the
        // header grows, so a crash never shows a larger image with that old content in it.
        long cs = _clusterSize;
        long zeroEnd = Math.Min(newSize, Math.Max((old + cs - 1) / cs * cs, _backing?.Size ?? 0));
        if (zeroEnd > old)
        {
            await WriteZeroesCoreAsync(old, zeroEnd - old, checkRange: false, CancellationToken.None).ConfigureAwait(false);
            await FlushCoreAsync(CancellationToken.None).ConfigureAwait(false);
        }
        await WriteSizeAsync(newSize).ConfigureAwait(false);
    }

    private async Task ShrinkPausedAsync(long old, long newSize)
    {
        long cs = _clusterSize;
        // The new last cluster's bytes past the new end are zeroed, so a later grow reads zeroes there.
        long keepEnd = Math.Min(old, (newSize + cs - 1) / cs * cs);
        if (keepEnd > newSize) await WriteZeroesCoreAsync(newSize, keepEnd - newSize, checkRange: false, CancellationToken.None).ConfigureAwait(false);
        await WriteBackMetadataAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        await AwaitTableLoadsAsync().ConfigureAwait(false);

        // Drop every mapping past the new end: partial tables get their tail entries cleared, tables wholly past it
        // are unlinked. Durable before the header shrinks, so a crash never leaves mappings beyond the size that a
        // later grow would expose.
        long firstDropped = (newSize + cs - 1) / cs;
        Interlocked.Increment(ref _mappingVersion);
        var freed = new List<(long Offset, long Length)>();
        for (int i = (int)(firstDropped >> _entryBits); i < _l1.Length; i++)
        {
            if (Volatile.Read(ref _l1[i]) == 0) continue;
            var table = await GetTableAsync(i, CancellationToken.None).ConfigureAwait(false);
            if (table is null) continue;
            long tableFirst = (long)i << _entryBits;
            int from = (int)Math.Max(0, firstDropped - tableFirst);
            bool changed = false;
            lock (table)
            {
                for (int j = from; j < _entriesPerTable; j++)
                {
                    ulong entry = table.Entries[j];
                    if (entry == 0) continue;
                    if (Classify(table, j, entry) == ExtentKind.Data) freed.Add(((long)entry, cs));
                    if (from > 0) Volatile.Write(ref table.Entries[j], 0UL);
                    changed = true;
                }
            }
            if (from == 0)
            {
                await WriteL1EntryAsync(i, 0).ConfigureAwait(false);
                freed.Add(((long)table.FileOffset, _tableBytes));
                lock (_metaLock)
                {
                    _tables.Remove(i);
                    Volatile.Write(ref _ready[i], null);
                    for (long c = (long)table.FileOffset >> _clusterBits; c < ((long)table.FileOffset + _tableBytes) >> _clusterBits; c++)
                        _tableClusters.TryRemove(c, out _);
                }
            }
            else if (changed)
            {
                byte[] bytes;
                lock (table) bytes = EncodeEntries(table.Entries, 0, _entriesPerTable);
                await _file.WriteAsync((long)table.FileOffset, bytes).ConfigureAwait(false);
            }
        }
        await _file.FlushAsync().ConfigureAwait(false);
        await WriteSizeAsync(newSize).ConfigureAwait(false);

        // Nothing points at the freed clusters any more, on disk or in memory, and no request is in flight (the gate
        // is paused): punching them out cannot hit data anyone can still reach. Then cut the unreferenced tail.
        freed.Sort();
        for (int i = 0; i < freed.Count;)
        {
            var (offset, length) = freed[i++];
            while (i < freed.Count && freed[i].Offset == offset + length) length += freed[i++].Length; // one punch per run
            await _file.ZeroRangeAsync(offset, length, CancellationToken.None).ConfigureAwait(false);
        }
        var layout = await MapReferencesAsync().ConfigureAwait(false);
        long end = Math.Max(layout.HeaderClusters, layout.L1End);
        foreach (long cluster in layout.Owners.Keys) end = Math.Max(end, cluster + 1);
        await TruncateToAsync(end << _clusterBits).ConfigureAwait(false);
    }

    /// <summary>Writes the guest size into the header and syncs it, then makes it the size requests check against.</summary>
    private async Task WriteSizeAsync(long newSize)
    {
        await _headerWriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var header = _header with { ImageSize = (ulong)newSize };
            await WriteHeaderAsync(_file, header, CancellationToken.None).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
            _header = header;
        }
        finally
        {
            _headerWriteLock.Release();
        }
        Volatile.Write(ref _size, newSize);
    }
}
