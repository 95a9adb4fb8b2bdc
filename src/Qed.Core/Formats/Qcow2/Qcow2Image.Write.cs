using Qed.Formats.Shared;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

// The write path. A write to an allocated standard cluster goes in place with no metadata change. Anything else
// claims its guest clusters, takes new clusters at the end of the file (refcounts set in memory), writes the data with
// the cluster's old content around it, then publishes the L2 entries in memory; write-back to disk happens at flush,
// in an order that keeps the refcount >= references invariant (see Qcow2WriteBack).
public sealed partial class Qcow2Image
{
    /// <summary>Write-back is forced once dirty L2 tables hold this many bytes (or the cache budget, if smaller).</summary>
    private const long MaxDirtyBytes = 32L << 20;

    private void ThrowIfFailed() => _failure.ThrowIfFailed();

    /// <inheritdoc />
    /// <remarks>Writes back every metadata change in crash-safe order (see <see cref="Qcow2WriteBack"/>); a failure part
    /// way makes the image refuse further writes, since memory and disk may disagree.</remarks>
    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            if (_readOnly) return;
            _failure.ThrowIfFailedForFlush();
            await _allocLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _writeBack.RunAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _failure.Record(e); // memory and disk may disagree now: refuse further writes
                throw;
            }
            finally
            {
                _allocLock.Release();
            }
        }
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }

    /// <summary>
    /// Fails when guest bytes [<paramref name="guest"/>, +<paramref name="length"/>), mapped in place to the file at
    /// <paramref name="host"/>, would land on metadata. The fast path is one binary search and allocates nothing.
    /// </summary>
    private ValueTask CheckDataWriteAsync(long guest, long host, long length, CancellationToken ct)
    {
        if (!_guard.OverlapsAny(host, length, out var kind, out long cluster)) return ValueTask.CompletedTask;
        return DataOverlapAsync(guest, host, kind, cluster, ct);
    }

    private async ValueTask DataOverlapAsync(long guest, long host, Qcow2Metadata kind, long cluster, CancellationToken ct)
    {
        long at = guest + Math.Max(0, (cluster << _clusterBits) - host); // the first guest byte on that cluster
        var table = await GetL2Async(L1IndexOf(at), ct).ConfigureAwait(false);
        int index = L2IndexOf(at);
        long entryAt = table!.FileOffset + 8L * index;
        ulong entry = Volatile.Read(ref table.Entries[index]);
        throw await _guard.CorruptAsync(
            $"qcow2 L2 table {table.L1Index} entry {index} (file offset 0x{entryAt:x}) holds 0x{entry:x}: guest offset 0x{at & ~(long)(_clusterSize - 1):x} there",
            kind, cluster, $"L2[{table.L1Index}][{index}]", entryAt).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        try
        {
            CheckWritable();
            CheckRange(offset, data.Length);
            ThrowIfFailed();
            while (data.Length > 0)
            {
                var m = await LookupAsync(offset, data.Length, cancellationToken).ConfigureAwait(false);
                int n = (int)m.Length;
                if (m.Kind == Qcow2ClusterKind.Data)
                {
                    await CheckDataWriteAsync(offset, m.Host, n, cancellationToken).ConfigureAwait(false);
                    await _file.WriteAsync(m.Host, data[..n], cancellationToken).ConfigureAwait(false);
                }
                else if (!await AllocateAndWriteAsync(m, offset, data[..n], cancellationToken).ConfigureAwait(false))
                    continue; // the clusters changed under us: look again
                offset += n;
                data = data[n..];
            }
            await WriteBackIfLargeAsync(cancellationToken).ConfigureAwait(false);
        }
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> (inside mapping <paramref name="m"/>, which is not
    /// data) into new clusters. Returns false, having done nothing, when the clusters changed since the lookup.
    /// </summary>
    private async ValueTask<bool> AllocateAndWriteAsync(Mapping m, long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        long end = offset + data.Length;
        long c0 = offset >> _clusterBits, c1 = (end - 1) >> _clusterBits;
        int count = (int)(c1 - c0 + 1);
        ClusterClaims.Hold claim = default;
        Qcow2L2Table? pinned = null;
        long host = -1;
        Task? wait = null;
        await _allocLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            wait = _claims.FindHolder(c0, count);
            if (wait == null)
            {
                var now = await LookupAsync(offset, data.Length, ct).ConfigureAwait(false);
                if (now.Kind != m.Kind || now.Length < data.Length || (m.Kind == Qcow2ClusterKind.Compressed && now.Entry != m.Entry))
                    return false;
                // The tables this write will change are checked before any data goes out.
                var existing = await GetL2Async(L1IndexOf(offset), ct).ConfigureAwait(false);
                if (existing != null) await _guard.CheckL2ForUpdateAsync(existing).ConfigureAwait(false);
                else await _guard.CheckL1Async().ConfigureAwait(false);
                host = await _allocator.AllocateAsync(count, ct).ConfigureAwait(false);
                await _guard.CheckNewClustersAsync($"for guest offset 0x{c0 << _clusterBits:x}", host, (long)count << _clusterBits).ConfigureAwait(false);
                // Pinned, the table stays cached while the data goes out: the mapping is published into it.
                if (existing != null) pinned = _cache.Pin(existing);
                claim = _claims.Take(c0, count);
            }
        }
        finally
        {
            _allocLock.Release();
        }
        if (wait != null)
        {
            await wait.WaitAsync(ct).ConfigureAwait(false);
            return false;
        }

        try
        {
            // Data first, with the untouched head and tail of the first and last cluster taken from the old content.
            long guestStart = c0 << _clusterBits;
            long head = offset - guestStart;
            long tail = ((c1 + 1) << _clusterBits) - end;
            if (head > 0)
            {
                var fill = new byte[head];
                await ReadMappedAsync(m, guestStart, fill, ct).ConfigureAwait(false);
                await _file.WriteAsync(host, fill, ct).ConfigureAwait(false);
            }
            await _file.WriteAsync(host + head, data, ct).ConfigureAwait(false);
            if (tail > 0)
            {
                var fill = new byte[tail];
                await ReadMappedAsync(m, end, fill, ct).ConfigureAwait(false);
                await _file.WriteAsync(end - guestStart + host, fill, ct).ConfigureAwait(false);
            }

            // Then the mapping, in memory; the disk learns of it at the next write-back, after the data is durable.
            await _allocLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                Qcow2L2Table table;
                if (pinned != null)
                {
                    // Pinned, it is still the cached instance: unpinned and marked dirty in one step (dirty, it stays).
                    await _guard.CheckL2ForUpdateAsync(pinned).ConfigureAwait(false);
                    table = pinned;
                    pinned = null;
                    _cache.Unpin(table, dirty: true);
                    _writeBack.AddDirty(table);
                }
                else table = await GetL2ForUpdateAsync(L1IndexOf(offset), CancellationToken.None).ConfigureAwait(false);
                int first = L2IndexOf(offset);
                for (int i = 0; i < count; i++)
                {
                    _allocator.QueueFreeOf(Volatile.Read(ref table.Entries[first + i]));
                    Volatile.Write(ref table.Entries[first + i], (ulong)(host + (long)i * _clusterSize) | Qcow2Entries.CopiedFlag);
                }
            }
            finally
            {
                _allocLock.Release();
            }
        }
        finally
        {
            // On failure the clusters stay counted but unreferenced: a leak, never a wrong mapping.
            if (pinned != null) _cache.Unpin(pinned); // not published: only the pin is given back
            _claims.Release(claim, c0, count);
        }
        return true;
    }

    /// <summary>The L2 table for an L1 index, made if missing, marked dirty and queued for write-back (under _allocLock).</summary>
    private async ValueTask<Qcow2L2Table> GetL2ForUpdateAsync(int l1Index, CancellationToken ct)
    {
        var table = await GetL2Async(l1Index, ct).ConfigureAwait(false);
        if (table == null)
        {
            await _guard.CheckL1Async().ConfigureAwait(false);
            long at = await _allocator.AllocateAsync(1, ct).ConfigureAwait(false);
            await _guard.CheckNewClustersAsync($"for L2 table {l1Index}", at, _clusterSize).ConfigureAwait(false);
            _guard.Add(at >> _clusterBits, Qcow2Metadata.ActiveL2);
            table = new Qcow2L2Table(l1Index, at, new ulong[_l2Entries]);
            _cache.AddNew(table); // cached before the L1 entry is set: readers never miss it
            Volatile.Write(ref _l1[l1Index], (ulong)at | Qcow2Entries.CopiedFlag);
            _writeBack.AddDirtyL1(l1Index);
        }
        else
        {
            await _guard.CheckL2ForUpdateAsync(table).ConfigureAwait(false);
            // A clean table may have been evicted (and maybe reloaded) since: the cache says which one to update.
            table = _cache.MarkDirty(table);
        }
        _writeBack.AddDirty(table);
        return table;
    }

    /// <summary>
    /// Rewrites the entries of the whole clusters [offset, offset+length) (inside mapping <paramref name="m"/>) with
    /// <paramref name="rewrite"/>, queueing the old host space for freeing when an entry lets go of it. Returns false,
    /// having done nothing, when the clusters changed since the lookup.
    /// </summary>
    private async ValueTask<bool> RewriteEntriesAsync(Mapping m, long offset, long length, Func<ulong, ulong> rewrite, CancellationToken ct)
    {
        long c0 = offset >> _clusterBits, c1 = (offset + length - 1) >> _clusterBits;
        Task? wait;
        await _allocLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            wait = _claims.FindHolder(c0, (int)(c1 - c0 + 1));
            if (wait == null)
            {
                var now = await LookupAsync(offset, length, ct).ConfigureAwait(false);
                if (now.Kind != m.Kind || now.Length < length) return false;
                var table = await GetL2ForUpdateAsync(L1IndexOf(offset), ct).ConfigureAwait(false);
                int first = L2IndexOf(offset);
                for (int i = 0; i <= c1 - c0; i++)
                {
                    ulong old = Volatile.Read(ref table.Entries[first + i]);
                    ulong next = rewrite(old);
                    if (next == old) continue;
                    if ((old & Qcow2Entries.CompressedFlag) != 0 || (old & Qcow2Entries.OffsetMask) != (next & Qcow2Entries.OffsetMask))
                        _allocator.QueueFreeOf(old);
                    Volatile.Write(ref table.Entries[first + i], next);
                }
            }
        }
        finally
        {
            _allocLock.Release();
        }
        if (wait == null) return true;
        await wait.WaitAsync(ct).ConfigureAwait(false);
        return false;
    }

    /// <summary>Where the whole clusters of a run ending at <paramref name="runEnd"/> end: the image's last, partial
    /// cluster counts as whole (write-zeroes and discard treat it alike).</summary>
    private long WholeClustersEnd(long runEnd) => runEnd == _size ? runEnd : runEnd & ~(long)(_clusterSize - 1);

    /// <inheritdoc />
    public override async ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            ThrowIfFailed();
            long mask = _clusterSize - 1;
            while (length > 0)
            {
                var m = await LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
                long runEnd = offset + m.Length;
                long wholeEnd = WholeClustersEnd(runEnd);
                long n;
                bool ok;
                if ((offset & mask) == 0 && wholeEnd > offset)
                {
                    n = wholeEnd - offset;
                    ok = await ZeroWholeClustersAsync(m, offset, n, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    n = Math.Min(runEnd, (offset + _clusterSize) & ~mask) - offset;
                    ok = await ZeroPartOfClusterAsync(m, offset, n, cancellationToken).ConfigureAwait(false);
                }
                if (!ok) continue;
                offset += n;
                length -= n;
            }
            await WriteBackIfLargeAsync(cancellationToken).ConfigureAwait(false);
        }
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }

    private bool BackingUnder(long offset) => _backing != null && offset < _backing.Size;

    private async ValueTask<bool> ZeroWholeClustersAsync(Mapping m, long offset, long n, CancellationToken ct)
    {
        switch (m.Kind)
        {
            case Qcow2ClusterKind.Zero:
                return true;
            case Qcow2ClusterKind.Data when !_v3:
                await CheckDataWriteAsync(offset, m.Host, n, ct).ConfigureAwait(false);
                await _file.ZeroRangeAsync(m.Host, n, ct).ConfigureAwait(false);
                return true;
            case Qcow2ClusterKind.Data:
                // As QEMU: the cluster stays allocated (a preallocated zero cluster), so nothing is freed.
                return await RewriteEntriesAsync(m, offset, n, old => (old & Qcow2Entries.OffsetMask) | Qcow2Entries.CopiedFlag | Qcow2Entries.ZeroFlag, ct).ConfigureAwait(false);
            case Qcow2ClusterKind.Unallocated when !BackingUnder(offset):
                return true;
            default: // unallocated over backing data, or compressed
                if (_v3) return await RewriteEntriesAsync(m, offset, n, _ => Qcow2Entries.ZeroFlag, ct).ConfigureAwait(false);
                await WriteZeroBytesAsync(offset, n, ct).ConfigureAwait(false);
                return true;
        }
    }

    private async ValueTask<bool> ZeroPartOfClusterAsync(Mapping m, long offset, long n, CancellationToken ct)
    {
        switch (m.Kind)
        {
            case Qcow2ClusterKind.Zero:
                return true;
            case Qcow2ClusterKind.Data:
                await CheckDataWriteAsync(offset, m.Host, n, ct).ConfigureAwait(false);
                await _file.ZeroRangeAsync(m.Host, n, ct).ConfigureAwait(false);
                return true;
            case Qcow2ClusterKind.Unallocated when !BackingUnder(offset):
                return true;
            default:
                return await AllocateAndWriteAsync(m, offset, new byte[n], ct).ConfigureAwait(false);
        }
    }

    /// <summary>Writes zero bytes through the ordinary write path (version 2 has no zero clusters).</summary>
    private async ValueTask WriteZeroBytesAsync(long offset, long length, CancellationToken ct)
    {
        while (length > 0)
        {
            int n = (int)Math.Min(length, Zeroes.Block.Length);
            await WriteAsync(offset, Zeroes.Block[..n], ct).ConfigureAwait(false);
            offset += n;
            length -= n;
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Whole clusters lose their host space (refcount decremented after the new entry is durable): they become zero
    /// clusters over a backing file (version 3), or unallocated without one. Freed clusters are not reused or punched
    /// while the image is open, so a request still reading an old mapping reads the old data. Partial clusters, and
    /// version 2 images with a backing file, are left as they are (discard is advisory).
    /// </remarks>
    public override async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            ThrowIfFailed();
            long mask = _clusterSize - 1;
            while (length > 0)
            {
                var m = await LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
                long runEnd = offset + m.Length;
                long wholeEnd = WholeClustersEnd(runEnd);
                long n = m.Length;
                if ((offset & mask) != 0 || wholeEnd <= offset)
                {
                    n = Math.Min(runEnd, (offset + _clusterSize) & ~mask) - offset;
                }
                else if (m.Kind != Qcow2ClusterKind.Unallocated)
                {
                    n = wholeEnd - offset;
                    bool backing = BackingUnder(offset);
                    if (!backing || _v3)
                    {
                        ulong replacement = backing ? Qcow2Entries.ZeroFlag : 0;
                        if (!await RewriteEntriesAsync(m, offset, n, _ => replacement, cancellationToken).ConfigureAwait(false)) continue;
                    }
                }
                offset += n;
                length -= n;
            }
            await WriteBackIfLargeAsync(cancellationToken).ConfigureAwait(false);
        }
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }

    private async ValueTask WriteBackIfLargeAsync(CancellationToken ct)
    {
        if (_writeBack.DirtyL2Bytes >= _maxDirtyBytes)
            await FlushAsync(ct).ConfigureAwait(false);
    }
}
