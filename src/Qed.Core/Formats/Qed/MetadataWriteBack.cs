using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// Gets L2 and L1 entries to disk in an order that survives a crash: entries change in memory at once (reads see
/// them), the table joins the dirty set, and a write-back (flush, close, or too many dirty tables) writes them later.
/// </summary>
/// <remarks>
/// What a crash could otherwise expose decides the order:
/// - With a backing file, an entry on disk ahead of its data would read zeroes where the backing file's content
///   belongs, so a write-back first makes the data of every entry it is about to write durable (one group-commit
///   sync shared with concurrent writers), then writes the entries.
/// - Without one, an entry ahead of its data reads as zeroes, the old content, and NEED_CHECK covers entries that
///   point past the end of a file whose extension was lost: no sync first.
/// - A new table is written whole and synced before the L1 entry that links it.
/// - Under write-through cache modes every update is eager (data synced, then the entries written before the request
///   completes), so a completed request is durable with its metadata.
/// State owned here: the dirty set (under the metadata lock the image hands in, which the cache's eviction also
/// reads under), the write-back lock (one write-back at a time), the data-sync coalescer, and the mapping version,
/// bumped by every change of a mapping so a defragment pass can tell its map is still exact. Any failed metadata
/// write is latched: memory and disk may disagree, so writes stop until a check.
/// </remarks>
internal sealed class MetadataWriteBack
{
    /// <summary>Write back dirty metadata once this many tables are dirty, to bound memory and lost work.</summary>
    public const int MaxDirtyTables = 64;

    private readonly IBlockStorage _file;
    private readonly L1Table _l1;
    private readonly FailureLatch _latch;
    private readonly Lock _metaLock;
    private readonly HashSet<L2Table> _dirtyTables = new(); // under _metaLock
    private readonly SyncCoalescer _dataSync;
    private readonly SemaphoreSlim _writeBackLock = new(1, 1);
    private readonly bool _writeThrough;
    private readonly bool _dataBeforeEntries;
    private readonly bool _skipDataFlush;
    private long _mappingVersion;

    /// <param name="file">The image file.</param>
    /// <param name="l1">The L1 table new tables are linked into.</param>
    /// <param name="latch">Where a failed metadata write is recorded.</param>
    /// <param name="metaLock">The image's metadata lock, guarding the dirty set.</param>
    /// <param name="writeThrough">Every update is written before its request completes.</param>
    /// <param name="dataBeforeEntries">Data is made durable before entries pointing at it are written (a backing file).</param>
    /// <param name="skipDataFlush">Test hook (<see cref="QedTuning.SkipDataFlush"/>): skip those data syncs.</param>
    public MetadataWriteBack(IBlockStorage file, L1Table l1, FailureLatch latch, Lock metaLock, bool writeThrough,
        bool dataBeforeEntries, bool skipDataFlush)
    {
        _file = file;
        _l1 = l1;
        _latch = latch;
        _metaLock = metaLock;
        _writeThrough = writeThrough;
        _dataBeforeEntries = dataBeforeEntries;
        _skipDataFlush = skipDataFlush;
        _dataSync = new SyncCoalescer(() => _file.FlushAsync().AsTask());
    }

    /// <summary>Changes at every mapping change (an L2 entry committed, an L1 entry written, entries dropped).</summary>
    public long MappingVersion => Volatile.Read(ref _mappingVersion);

    /// <summary>Records a mapping change made outside this type (a shrink dropping entries with the gate paused).</summary>
    public void NoteMappingChanged() => Interlocked.Increment(ref _mappingVersion);

    /// <summary>Whether <paramref name="table"/> waits in the dirty set. Caller holds the metadata lock.</summary>
    public bool IsQueuedLocked(L2Table table)
    {
        Debug.Assert(_metaLock.IsHeldByCurrentThread);
        return _dirtyTables.Contains(table);
    }

    /// <summary>
    /// Publishes new L2 entries (their data is already written): in memory at once, so reads see them, and on disk
    /// eagerly or deferred as the policy above says.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask CommitEntriesAsync(L2Table table, int first, int count, ulong firstValue, ulong step, bool eager)
    {
        Interlocked.Increment(ref _mappingVersion);
        eager |= _writeThrough;
        if (!eager)
        {
            table.SetEntries(first, count, firstValue, step, markDirty: true);
            bool tooMany;
            lock (_metaLock)
            {
                _dirtyTables.Add(table);
                tooMany = _dirtyTables.Count > MaxDirtyTables;
            }
            if (tooMany) await WriteBackAsync().ConfigureAwait(false);
            return;
        }

        if (!_skipDataFlush) await _dataSync.SyncAsync().ConfigureAwait(false); // data durable before any entry points at it
        await table.DiskLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var (bytes, at, link) = table.SetAndSnapshot(first, count, firstValue, step);
            await WriteTableBytesAsync(table, bytes, at, link).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _latch.Record(e); // memory and disk may now disagree: stop writing until the image is checked
            throw;
        }
        finally
        {
            table.DiskLock.Release();
        }
    }

    /// <summary>Writes a table snapshot; a new table is flushed before the L1 entry that makes it reachable.</summary>
    private async Task WriteTableBytesAsync(L2Table table, byte[] bytes, long at, bool link)
    {
        await _file.WriteAsync(at, bytes).ConfigureAwait(false);
        if (!link) return;
        await _file.FlushAsync().ConfigureAwait(false);
        await WriteL1EntryAsync(table.L1Index, table.FileOffset).ConfigureAwait(false);
        table.MarkLinked();
    }

    /// <summary>Writes every dirty table (and the L1 entries of new ones). Does not sync after; callers flush.</summary>
    public async Task WriteBackAsync()
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
                    if (table.SnapshotDirty() is { } snapshot) snapshots.Add((table, snapshot.Bytes, snapshot.At, snapshot.Link));
                }
                if (_dataBeforeEntries && snapshots.Count > 0 && !_skipDataFlush)
                    await _dataSync.SyncAsync().ConfigureAwait(false);
                foreach (var (table, bytes, at, link) in snapshots)
                    await WriteTableBytesAsync(table, bytes, at, link).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _latch.Record(e);
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

    /// <summary>Sets an L1 entry and writes its sector (the table it names, if any, is durable already).</summary>
    public Task WriteL1EntryAsync(int l1Index, ulong value)
    {
        Interlocked.Increment(ref _mappingVersion);
        return _l1.WriteAsync(l1Index, value);
    }

    /// <summary>
    /// Writes a whole table as it is in memory, at its file offset (maintenance, with the gate paused and the table's
    /// entries durable or about to be synced by the caller).
    /// </summary>
    public ValueTask WriteWholeTableAsync(L2Table table) => _file.WriteAsync((long)table.FileOffset, table.EncodeAll());

    /// <summary>
    /// Writes a whole table's bytes at <paramref name="fileOffset"/>, its new home before a move (maintenance, with
    /// the gate paused; the caller syncs before the L1 entry names it).
    /// </summary>
    public ValueTask CopyTableAsync(L2Table table, long fileOffset) => _file.WriteAsync(fileOffset, table.EncodeAll());
}
