using System.Buffers.Binary;
using System.Collections.Concurrent;
using Qed.Format;

namespace Qed;

// Tables: the L1 table, the L2 cache, lookups that validate every entry before it is followed, and the NEED_CHECK
// bit's life cycle.
public sealed partial class QedImage
{
    /// <summary>An L2 table in memory. Entries change only under <see cref="WriteLock"/> or before it is shared.</summary>
    private sealed class L2Table(int l1Index, ulong fileOffset, ulong[] entries, bool linked)
    {
        public readonly int L1Index = l1Index;
        public readonly ulong FileOffset = fileOffset;
        public readonly ulong[] Entries = entries;
        /// <summary>True once the table is on disk and the L1 entry pointing at it is written.</summary>
        public bool Linked = linked;
        /// <summary>Serialises writes of this table, so the disk never sees an older copy after a newer one.</summary>
        public readonly SemaphoreSlim WriteLock = new(1, 1);
    }

    private readonly ulong[] _l1;
    private readonly SemaphoreSlim _l1WriteLock = new(1, 1);
    private readonly SemaphoreSlim _headerWriteLock = new(1, 1);

    // Guarded by _metaLock: the table cache, clusters being allocated, the allocation cursor and the dirty state.
    private readonly Lock _metaLock = new();
    private readonly Dictionary<int, Task<L2Table>> _tables = new();
    private long _fileEnd;          // next free cluster-aligned file offset; only grows
    private readonly long _staleEnd; // the file's length at open: bytes in [_fileEnd at open, _staleEnd) are stale
    private int _activeAllocations;
    private bool _needCheckOnDisk;
    private Task? _settingNeedCheck;
    private Task? _clearingNeedCheck;

    /// <summary>Set when a corrupt entry or a failed metadata write was met: writes are refused until a check.</summary>
    private volatile Exception? _failure;

    private const ulong ZeroClusterEntry = 1;

    // Every cluster of every L2 table (cluster index -> L1 index), so a data entry pointing into a table is refused
    // before anything writes through it; and the tables that overlap an earlier one (or L1), which are never followed.
    private readonly ConcurrentDictionary<long, int> _tableClusters = new();
    private readonly HashSet<int> _overlappingTables = new();

    /// <summary>
    /// Indexes the L2 tables named by L1 at open. A table overlapping the L1 table or a table of a lower L1 index is
    /// recorded as overlapping, as the check counts it: the first claim keeps the clusters.
    /// </summary>
    private void IndexTables()
    {
        long fileClusters = _fileEnd / _clusterSize;
        for (int i = 0; i < _l1.Length; i++)
        {
            ulong offset = _l1[i];
            if (offset == 0 || !_header.IsValidTableOffset(offset, fileClusters)) continue;
            long first = (long)(offset >> _clusterBits);
            bool overlaps = OverlapsL1(offset, _tableBytes);
            for (long c = first; c < first + _header.TableSize && !overlaps; c++) overlaps = _tableClusters.ContainsKey(c);
            if (overlaps) { _overlappingTables.Add(i); continue; }
            for (long c = first; c < first + _header.TableSize; c++) _tableClusters[c] = i;
        }
    }

    /// <summary>Records a new table's clusters. Caller holds _metaLock.</summary>
    private void IndexNewTable(int l1Index, long offset)
    {
        for (long c = offset >> _clusterBits; c < (offset + _tableBytes) >> _clusterBits; c++) _tableClusters[c] = l1Index;
    }

    private int L1IndexOf(long offset) => (int)(offset >> (_clusterBits + _entryBits));
    private int L2IndexOf(long offset) => (int)((offset >> _clusterBits) & (_entriesPerTable - 1));

    /// <summary>Returns the L2 table for an L1 index (loading and validating it), or null if none is allocated.</summary>
    private ValueTask<L2Table?> GetTableAsync(int l1Index, CancellationToken ct)
    {
        Task<L2Table>? task;
        lock (_metaLock)
        {
            if (!_tables.TryGetValue(l1Index, out task))
            {
                ulong offset = Volatile.Read(ref _l1[l1Index]);
                if (offset == 0) return ValueTask.FromResult<L2Table?>(null);
                task = LoadTableAsync(l1Index, offset);
                _tables[l1Index] = task;
            }
        }
        if (task.IsCompletedSuccessfully) return ValueTask.FromResult<L2Table?>(task.Result);
        return AwaitTableAsync(l1Index, task, ct);
    }

    private async ValueTask<L2Table?> AwaitTableAsync(int l1Index, Task<L2Table> task, CancellationToken ct)
    {
        try
        {
            return await task.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception) when (task.IsFaulted)
        {
            lock (_metaLock)
                if (_tables.TryGetValue(l1Index, out var current) && current == task) _tables.Remove(l1Index);
            throw;
        }
    }

    private async Task<L2Table> LoadTableAsync(int l1Index, ulong offset)
    {
        await Task.Yield(); // never run the read under the caller's lock
        if (!_header.IsValidTableOffset(offset, Volatile.Read(ref _fileEnd) / _clusterSize) || OverlapsL1(offset, _tableBytes))
            throw Corrupt($"QED L1 entry {l1Index} (file offset 0x{L1EntryFileOffset(l1Index):x}) is an invalid table offset 0x{offset:x}",
                $"L1[{l1Index}]", L1EntryFileOffset(l1Index));
        if (_overlappingTables.Contains(l1Index))
            throw Corrupt($"QED L1 entry {l1Index} (file offset 0x{L1EntryFileOffset(l1Index):x}) names the table 0x{offset:x}, which overlaps another L2 table",
                $"L1[{l1Index}]", L1EntryFileOffset(l1Index));
        var entries = await ReadTableAsync(_file, (long)offset, _tableBytes, CancellationToken.None).ConfigureAwait(false);
        return new L2Table(l1Index, offset, entries, linked: true);
    }

    private long L1EntryFileOffset(int l1Index) => (long)_header.L1TableOffset + 8L * l1Index;

    private bool OverlapsL1(ulong offset, long length) =>
        offset < _header.L1TableOffset + (ulong)_tableBytes && offset + (ulong)length > _header.L1TableOffset;

    /// <summary>Records a corruption met at run time: the request fails and the image refuses writes until checked.</summary>
    private ImageFormatException Corrupt(string message, string field, long fileOffset)
    {
        var error = new ImageFormatException($"{message}; the image '{Name}' needs 'qed check -r all'", field, fileOffset);
        _failure ??= error;
        return error;
    }

    private void ThrowIfFailed()
    {
        var failure = _failure;
        if (failure != null)
            throw new InvalidOperationException($"Writes to '{Name}' are refused until it is checked: {failure.Message}", failure);
    }

    /// <summary>
    /// Describes the run at <paramref name="offset"/> in this layer, at most <paramref name="length"/> bytes and never
    /// crossing an L2 table, validating each data entry it passes.
    /// </summary>
    private async ValueTask<LayerExtent> LookupAsync(long offset, long length, CancellationToken ct)
    {
        int l1Index = L1IndexOf(offset);
        long tableSpan = 1L << (_clusterBits + _entryBits);
        long max = Math.Min(length, tableSpan - (offset & (tableSpan - 1)));
        var table = await GetTableAsync(l1Index, ct).ConfigureAwait(false);
        if (table is null) return new LayerExtent(offset, max, ExtentKind.Unallocated, -1);

        int index = L2IndexOf(offset);
        ulong entry = Volatile.Read(ref table.Entries[index]);
        var kind = Classify(table, index, entry);
        long inCluster = offset & (_clusterSize - 1);
        long run = _clusterSize - inCluster;
        ulong expected = entry + (ulong)_clusterSize;
        for (int i = index + 1; run < max && i < _entriesPerTable; i++)
        {
            ulong next = Volatile.Read(ref table.Entries[i]);
            if (kind == ExtentKind.Data)
            {
                if (next != expected) break;
                Classify(table, i, next);
                expected += (ulong)_clusterSize;
            }
            else if (Classify(table, i, next) != kind)
            {
                break;
            }
            run += _clusterSize;
        }
        return new LayerExtent(offset, Math.Min(run, max), kind, kind == ExtentKind.Data ? (long)entry + inCluster : -1);
    }

    /// <summary>Says what an L2 entry means, throwing if it is a data offset that cannot be followed safely.</summary>
    private ExtentKind Classify(L2Table table, int index, ulong entry)
    {
        if (entry == 0) return ExtentKind.Unallocated;
        if (entry == ZeroClusterEntry) return ExtentKind.Zero;
        string? problem =
            entry % (ulong)_clusterSize != 0 ? "not cluster aligned" :
            entry < (ulong)_headerBytes ? "inside the header" :
            entry >= (ulong)Volatile.Read(ref _fileEnd) ? "past the end of the file" : // aligned, so the whole cluster fits below: no overflowing sum
            OverlapsL1(entry, _clusterSize) ? "inside the L1 table" :
            _tableClusters.ContainsKey((long)(entry >> _clusterBits)) ? "inside an L2 table" :
            null;
        if (problem == null) return ExtentKind.Data;
        long at = (long)table.FileOffset + 8L * index;
        throw Corrupt($"QED L2 table {table.L1Index} entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, {problem}",
            $"L2[{table.L1Index}][{index}]", at);
    }

    /// <summary>Serialises entries [first, first+count) of a table into little-endian bytes.</summary>
    private static byte[] EncodeEntries(ulong[] entries, int first, int count)
    {
        var bytes = new byte[count * 8];
        for (int i = 0; i < count; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), Volatile.Read(ref entries[first + i]));
        return bytes;
    }

    /// <summary>
    /// Publishes new L2 entries: memory first (their data is already where it must be), then the disk. A table not yet
    /// on disk is written whole and flushed before the L1 entry that makes it reachable, so a crash never leaves L1
    /// pointing at a half-written table. Otherwise only the 512-byte sectors holding the changed entries are written.
    /// </summary>
    private async Task CommitEntriesAsync(L2Table table, int first, int count, ulong firstValue, ulong step)
    {
        await table.WriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
            for (int i = 0; i < count; i++)
                Volatile.Write(ref table.Entries[first + i], firstValue + step * (ulong)i);
            if (!table.Linked)
            {
                await _file.WriteAsync((long)table.FileOffset, EncodeEntries(table.Entries, 0, _entriesPerTable)).ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                await WriteL1EntryAsync(table.L1Index, table.FileOffset).ConfigureAwait(false);
                table.Linked = true;
            }
            else
            {
                const int perSector = 512 / 8;
                int start = first / perSector * perSector;
                int end = Math.Min(_entriesPerTable, (first + count + perSector - 1) / perSector * perSector);
                await _file.WriteAsync((long)table.FileOffset + 8L * start, EncodeEntries(table.Entries, start, end - start)).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            _failure ??= e; // memory and disk may now disagree: stop writing until the image is checked
            throw;
        }
        finally
        {
            table.WriteLock.Release();
        }
    }

    /// <summary>Sets an L1 entry and writes the 512-byte sector of the L1 table that holds it.</summary>
    private async Task WriteL1EntryAsync(int l1Index, ulong value)
    {
        await _l1WriteLock.WaitAsync().ConfigureAwait(false);
        try
        {
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

    // ---- NEED_CHECK ----------------------------------------------------------------------------------------------
    // Without a backing file, an L2 entry may reach the disk before the data it points at (no flush between them), so
    // NEED_CHECK is made durable before the first such allocation and cleared only after a flush with none in flight.

    /// <summary>Registers an allocation; when it may leave entries ahead of data, waits until NEED_CHECK is durable.</summary>
    private async ValueTask BeginAllocationAsync(bool needsCheckBit, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            bool owner = false;
            lock (_metaLock)
            {
                if (_clearingNeedCheck != null)
                {
                    wait = _clearingNeedCheck;
                }
                else
                {
                    _activeAllocations++;
                    if (!needsCheckBit || _needCheckOnDisk) return;
                    wait = _settingNeedCheck ??= Task.Run(() => SetNeedCheckAsync(true));
                    owner = true;
                }
            }
            if (owner)
            {
                try
                {
                    await wait.WaitAsync(ct).ConfigureAwait(false);
                    return;
                }
                catch
                {
                    EndAllocation();
                    throw;
                }
            }
            try { await wait.WaitAsync(ct).ConfigureAwait(false); } catch (OperationCanceledException) { throw; } catch { }
        }
    }

    private void EndAllocation()
    {
        lock (_metaLock) _activeAllocations--;
    }

    /// <summary>Clears NEED_CHECK if it is set and no allocation is in flight: flush, header, flush.</summary>
    private async Task ClearNeedCheckIfIdleAsync(CancellationToken ct)
    {
        Task task;
        lock (_metaLock)
        {
            if (_keepNeedCheck || _activeAllocations > 0 || !_needCheckOnDisk || _clearingNeedCheck != null || _settingNeedCheck != null) return;
            task = _clearingNeedCheck = Task.Run(() => SetNeedCheckAsync(false));
        }
        await task.WaitAsync(ct).ConfigureAwait(false);
    }

    private async Task SetNeedCheckAsync(bool set)
    {
        try
        {
            await _headerWriteLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (!set) await _file.FlushAsync().ConfigureAwait(false); // everything the bit protects is durable first
                var header = _header with { Features = set ? _header.Features | QedFeatures.NeedCheck : _header.Features & ~QedFeatures.NeedCheck };
                await WriteHeaderAsync(_file, header, CancellationToken.None).ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                _header = header;
            }
            finally
            {
                _headerWriteLock.Release();
            }
            lock (_metaLock) _needCheckOnDisk = set;
        }
        finally
        {
            lock (_metaLock)
            {
                if (set) _settingNeedCheck = null;
                else _clearingNeedCheck = null;
            }
        }
    }
}
