using System.Buffers.Binary;

namespace Qed;

// Getting metadata to disk. Entries change in memory at once (reads see them), the table is marked dirty, and a
// write-back (flush, close, or too many dirty tables) writes them later. What a crash could otherwise expose decides
// the order of that write-back:
// - With a backing file, an entry on disk ahead of its data would read zeroes where the backing file's content
//   belongs, so the write-back first makes the data of every entry it is about to write durable (one group-commit
//   sync shared with concurrent writers), then writes the entries.
// - Without one, an entry ahead of its data reads as zeroes, the old content, and NEED_CHECK covers entries that
//   point past the end of a file whose extension was lost: no sync first.
// New tables are written whole before the L1 entry that links them. Under write-through cache modes every update is
// eager (data synced, then the entries written before the request completes), so a completed request is durable
// with its metadata.
public sealed partial class QedImage
{
    /// <summary>Write back dirty metadata once this many tables are dirty, to bound memory and lost work.</summary>
    private const int MaxDirtyTables = 64;

    private readonly SemaphoreSlim _l1WriteLock = new(1, 1);
    private readonly HashSet<L2Table> _dirtyTables = new(); // under _metaLock
    private readonly Storage.SyncCoalescer _dataSync;
    private readonly SemaphoreSlim _writeBackLock = new(1, 1);

    /// <summary>Serialises entries [first, first+count) of a table into little-endian bytes.</summary>
    private static byte[] EncodeEntries(ulong[] entries, int first, int count)
    {
        var bytes = new byte[count * 8];
        for (int i = 0; i < count; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), Volatile.Read(ref entries[first + i]));
        return bytes;
    }

    /// <summary>
    /// Publishes new L2 entries (their data is already written): in memory at once, so reads see them, and on disk
    /// eagerly or deferred as the policy above says.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CommitEntriesAsync(L2Table table, int first, int count, ulong firstValue, ulong step, bool eager)
    {
        Interlocked.Increment(ref _mappingVersion);
        eager |= _writeThrough;
        if (!eager)
        {
            lock (table)
            {
                for (int i = 0; i < count; i++)
                    Volatile.Write(ref table.Entries[first + i], firstValue + step * (ulong)i);
                table.DirtyLow = Math.Min(table.DirtyLow, first);
                table.DirtyHigh = Math.Max(table.DirtyHigh, first + count - 1);
            }
            bool tooMany;
            lock (_metaLock)
            {
                _dirtyTables.Add(table);
                tooMany = _dirtyTables.Count > MaxDirtyTables;
            }
            if (tooMany) await WriteBackMetadataAsync().ConfigureAwait(false);
            return;
        }

        if (!TestSkipDataFlush) await _dataSync.SyncAsync().ConfigureAwait(false); // data durable before any entry points at it
        await table.DiskLock.WaitAsync().ConfigureAwait(false);
        try
        {
            byte[] bytes;
            long at;
            bool link;
            lock (table)
            {
                for (int i = 0; i < count; i++)
                    Volatile.Write(ref table.Entries[first + i], firstValue + step * (ulong)i);
                (bytes, at, link) = SnapshotLocked(table, first, first + count - 1);
            }
            await WriteTableBytesAsync(table, bytes, at, link).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _failure ??= e; // memory and disk may now disagree: stop writing until the image is checked
            throw;
        }
        finally
        {
            table.DiskLock.Release();
        }
    }

    /// <summary>
    /// What to write for a table: the whole table if it was never written, else the 512-byte sectors holding entries
    /// [low, high] and the dirty range. Clears the dirty range. Caller holds <c>lock (table)</c>.
    /// </summary>
    private (byte[] Bytes, long At, bool Link) SnapshotLocked(L2Table table, int low, int high)
    {
        if (table.DirtyHigh >= 0)
        {
            low = Math.Min(low, table.DirtyLow);
            high = Math.Max(high, table.DirtyHigh);
        }
        table.DirtyLow = int.MaxValue;
        table.DirtyHigh = -1;
        if (!table.Linked)
            return (EncodeEntries(table.Entries, 0, _entriesPerTable), (long)table.FileOffset, true);
        const int perSector = 512 / 8;
        int start = low / perSector * perSector;
        int end = Math.Min(_entriesPerTable, (high / perSector + 1) * perSector);
        return (EncodeEntries(table.Entries, start, end - start), (long)table.FileOffset + 8L * start, false);
    }

    /// <summary>Writes a table snapshot; a new table is flushed before the L1 entry that makes it reachable.</summary>
    private async Task WriteTableBytesAsync(L2Table table, byte[] bytes, long at, bool link)
    {
        await _file.WriteAsync(at, bytes).ConfigureAwait(false);
        if (!link) return;
        await _file.FlushAsync().ConfigureAwait(false);
        await WriteL1EntryAsync(table.L1Index, table.FileOffset).ConfigureAwait(false);
        lock (table) table.Linked = true;
    }

    /// <summary>Writes every dirty table (and the L1 entries of new ones). Does not sync after; callers flush.</summary>
    private async Task WriteBackMetadataAsync()
    {
        // One write-back at a time: a flush that finds nothing dirty must still wait for a write-back that has taken
        // the dirty tables and not yet written them, or it could call entries durable that are still on their way.
        await _writeBackLock.WaitAsync().ConfigureAwait(false);
        try
        {
            L2Table[] dirty;
            lock (_metaLock)
            {
                if (_dirtyTables.Count == 0) return;
                dirty = [.. _dirtyTables];
                _dirtyTables.Clear();
            }
            Array.Sort(dirty, (a, b) => a.FileOffset.CompareTo(b.FileOffset)); // in file order
            // Every snapshot is taken before the data sync below, so each entry written was set (after its data was
            // written) before that sync began. The disk locks are taken in file order; nothing else holds two.
            var snapshots = new List<(L2Table Table, byte[] Bytes, long At, bool Link)>(dirty.Length);
            int locked = 0;
            try
            {
                foreach (var table in dirty)
                {
                    await table.DiskLock.WaitAsync().ConfigureAwait(false);
                    locked++;
                    lock (table)
                    {
                        if (table.DirtyHigh < 0 && table.Linked) continue;
                        var (bytes, at, link) = SnapshotLocked(table, table.DirtyLow == int.MaxValue ? 0 : table.DirtyLow, Math.Max(0, table.DirtyHigh));
                        snapshots.Add((table, bytes, at, link));
                    }
                }
                if (_dataBeforeEntries && snapshots.Count > 0 && !TestSkipDataFlush)
                    await _dataSync.SyncAsync().ConfigureAwait(false);
                foreach (var (table, bytes, at, link) in snapshots)
                    await WriteTableBytesAsync(table, bytes, at, link).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _failure ??= e;
                throw;
            }
            finally
            {
                for (int i = 0; i < locked; i++) dirty[i].DiskLock.Release();
            }
        }
        finally
        {
            _writeBackLock.Release();
        }
    }

    /// <summary>Sets an L1 entry and writes the 512-byte sector of the L1 table that holds it.</summary>
    private async Task WriteL1EntryAsync(int l1Index, ulong value)
    {
        await _l1WriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
            Interlocked.Increment(ref _mappingVersion);
            Volatile.Write(ref _l1[l1Index], value);
            const int perSector = 512 / 8;
            int start = l1Index / perSector * perSector;
            int count = Math.Min(perSector, _l1.Length - start);
            await _file.WriteAsync(L1EntryFileOffset(start), EncodeEntries(_l1, start, count)).ConfigureAwait(false);
        }
        finally
        {
            _l1WriteLock.Release();
        }
    }

    /// <summary>
    /// Takes <paramref name="bytes"/> (a cluster multiple) from the end of the file. The file always covers every
    /// reserved cluster, so a cluster whose tail is never written still lies wholly inside it. It grows in steps of at
    /// least 4 MiB (few calls; a crash leaks at most a step and a half; bigger steps made every crash-test state carry
    /// the slack), as reserved space where the filesystem allows (fallocate): new clusters then fill reserved extents,
    /// which the kernel takes faster than holes. Caller holds _metaLock.
    /// </summary>
    /// <remarks>
    /// Growing takes the inode lock, so it waits for the buffered write in progress. Done under _metaLock it stalled
    /// every allocation behind it; so when the reserved clusters come within half a step of the end, Reserve only asks
    /// for the next step, and the allocation that asked grows the file after leaving the lock (GrowAheadIfAsked).
    /// Growing here, under the lock, is left for when allocations outrun that.
    /// </remarks>
    private long Reserve(long bytes)
    {
        long offset = _fileEnd;
        long end = offset + bytes;
        Volatile.Write(ref _fileEnd, end);
        long step = Math.Max(_clusterSize, GrowStep);
        if (end > _extendedTo)
        {
            long target = end + step;
            lock (_growLock) _file.GrowAsync(target).AsTask().GetAwaiter().GetResult(); // storage grows files synchronously
            _extendedTo = target;
        }
        else if (_growAheadTo == 0 && _extendedTo - end < step / 2)
        {
            _growAheadTo = _extendedTo + step;
        }
        return offset;
    }

    /// <summary>Grows the file to the length Reserve asked for, if it did; outside _metaLock.</summary>
    /// <remarks>
    /// Only requests grow ahead (never the pausing operations that cut the file, which run with none in flight), and
    /// one at a time. A failure is left for Reserve: when the allocations reach the end it grows under the lock and
    /// reports the error to the request that needed the space.
    /// </remarks>
    private void GrowAheadIfAsked()
    {
        long target = Volatile.Read(ref _growAheadTo);
        if (target <= 0 || Interlocked.CompareExchange(ref _growAheadTo, -1, target) != target) return;
        bool grown = false;
        try
        {
            lock (_growLock) _file.GrowAsync(target).AsTask().GetAwaiter().GetResult(); // never shrinks the file
            grown = true;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        finally
        {
            lock (_metaLock)
            {
                if (grown) _extendedTo = Math.Max(_extendedTo, target);
                _growAheadTo = 0;
            }
        }
    }

    /// <summary>On close: trims the extension slack, keeping every cluster reserved and whatever was there at open.</summary>
    private async Task TrimExtensionAsync()
    {
        long keep;
        lock (_metaLock)
        {
            keep = Math.Max(_fileEnd, _staleEnd);
            _growAheadTo = 0;
            if (_extendedTo <= keep) return;
            _extendedTo = keep;
        }
        await _file.SetLengthAsync(keep).ConfigureAwait(false);
    }
}
