using System.Buffers.Binary;

namespace Qed.Formats.Qcow2;

// Write-back. Metadata changes live in memory until a flush, which writes them in dependency order with a sync
// between steps, so that whatever prefix of it survives a crash is consistent (clusters may leak, never alias):
//   1. refcount blocks (and, by the same sync, all guest data written so far);
//   2. the refcount table, then (if it moved) the header fields pointing at it;
//   3. L2 tables (a new table is durable before the L1 entry that links it; new data before the entry that maps it);
//   4. L1 sectors;
//   5. frees: refcounts of clusters whose last reference was removed in steps 3-4.
public sealed partial class Qcow2Image
{
    /// <inheritdoc />
    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_readOnly) return;
        if (_failure is ImageFormatException corrupt)
            throw new ImageFormatException($"'{Name}' cannot be flushed, its tables are no longer written: {corrupt.Message}", corrupt.Field, corrupt.FileOffset, corrupt);
        ThrowIfFailed();
        await _allocLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await WriteBackAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _failure ??= e; // memory and disk may disagree now: refuse further writes
            throw;
        }
        finally
        {
            _allocLock.Release();
        }
    }

    /// <summary>Runs the write-back under _allocLock. Not cancellable: half a write-back is worse than none.</summary>
    private async Task WriteBackAsync()
    {
        var ct = CancellationToken.None;
        await CheckWriteBackAsync().ConfigureAwait(false);
        bool metadata = _dirtyL2.Count > 0 || _dirtyL1.Count > 0 || _refTableDirty || _pendingFrees.Count > 0;

        // 1. Refcount blocks (data rides on the same sync).
        metadata |= await WriteDirtyRefBlocksAsync(ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        if (!metadata) return;

        // 2. Refcount table, then the header that points at a moved one.
        if (_refTableDirty)
        {
            await _file.WriteAsync(_refTableOffset, EncodeEntries(_refTable, 0, _refTable.Length), ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
            if (_refTableMoved)
            {
                var fields = new byte[12]; // refcount_table_offset and refcount_table_clusters are adjacent: one write
                BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)_refTableOffset);
                BinaryPrimitives.WriteUInt32BigEndian(fields.AsSpan(8), (uint)_refTableClusters);
                await _file.WriteAsync(Qcow2Header.RefcountTableOffsetOffset, fields, ct).ConfigureAwait(false);
                await _file.FlushAsync(ct).ConfigureAwait(false);
                _refTableMoved = false;
            }
            _refTableDirty = false;
        }

        // 3. L2 tables.
        if (_dirtyL2.Count > 0)
        {
            foreach (var table in _dirtyL2)
                await _file.WriteAsync(table.FileOffset, EncodeEntries(table.Entries, 0, _l2Entries), ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
            lock (_cacheLock)
                foreach (var table in _dirtyL2) table.Dirty = false;
            _dirtyL2.Clear();
            Volatile.Write(ref _dirtyL2Count, 0);
        }

        // 4. L1 sectors holding changed entries.
        if (_dirtyL1.Count > 0)
        {
            const int perSector = 512 / 8;
            int lastStart = -1;
            foreach (int index in _dirtyL1)
            {
                int start = index / perSector * perSector;
                if (start == lastStart) continue;
                lastStart = start;
                int count = Math.Min(perSector, _l1.Length - start);
                await _file.WriteAsync((long)_header.L1TableOffset + 8L * start, EncodeEntries(_l1, start, count), ct).ConfigureAwait(false);
            }
            await _file.FlushAsync(ct).ConfigureAwait(false);
            _dirtyL1.Clear();
        }

        // 5. Frees, now that no durable mapping points at the space.
        if (_pendingFrees.Count > 0)
        {
            await ApplyPendingFreesAsync(ct).ConfigureAwait(false);
            await WriteDirtyRefBlocksAsync(ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    private async ValueTask<bool> WriteDirtyRefBlocksAsync(CancellationToken ct)
    {
        bool any = false;
        foreach (var block in _refBlocks.Values)
        {
            if (!block.Dirty) continue;
            await _file.WriteAsync(block.FileOffset, block.Data, ct).ConfigureAwait(false);
            block.Dirty = false;
            any = true;
        }
        return any;
    }
}
