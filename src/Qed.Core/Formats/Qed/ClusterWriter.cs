using System.Buffers;
using System.Runtime.CompilerServices;
using Qed.Storage;

namespace Qed;

// The write path. Crash-safety rules (see DESIGN.md):
// - a new cluster is written (and, with a backing file, flushed) before any L2 entry points at it;
// - clusters come from the end of the file and are never reused, so a crash can leak space but never alias data;
// - without a backing file, entries may reach the disk before their data, which NEED_CHECK covers.
// Allocations of different clusters run concurrently; two requests for the same cluster agree through _inflight.
public sealed partial class QedImage
{
    /// <summary>
    /// Test hook: skip the flush between a new cluster's data and the L2 entry that points at it, so the crash test
    /// can show that it catches metadata reaching the disk before data. Never set outside tests.
    /// </summary>
    internal bool TestSkipDataFlush { get; set; }

    /// <summary>Guest clusters whose allocation is in flight, and who holds them. Under _metaLock.</summary>
    private readonly Dictionary<long, Claim> _inflight = new();
    private readonly Stack<Claim> _freeClaims = new(); // under _metaLock

    /// <summary>
    /// One request's hold on the clusters it is changing. A request that needs one of them waits for the end of the
    /// hold; the signal it waits on is made only then, since almost no claim is ever waited for, and claims are
    /// reused, so an allocating write costs no allocation of its own.
    /// </summary>
    private sealed class Claim
    {
        private TaskCompletionSource? _released; // under _metaLock

        /// <summary>What a request that needs these clusters waits for. Under _metaLock.</summary>
        public Task Released => (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>Ends the hold: returns the signal to set once out of the lock, if anyone waits. Under _metaLock.</summary>
        public TaskCompletionSource? End()
        {
            var released = _released;
            _released = null;
            return released;
        }
    }

    /// <summary>A claim on <paramref name="count"/> clusters from <paramref name="firstCluster"/>. Under _metaLock.</summary>
    private Claim ClaimLocked(long firstCluster, int count)
    {
        var claim = _freeClaims.TryPop(out var free) ? free : new Claim();
        for (long c = firstCluster; c < firstCluster + count; c++) _inflight[c] = claim;
        return claim;
    }

    /// <summary>Releases a claim and returns it for reuse; returns the signal to set once out of the lock. Under _metaLock.</summary>
    private TaskCompletionSource? ReleaseLocked(Claim claim, long firstCluster, int count)
    {
        for (long c = firstCluster; c < firstCluster + count; c++) _inflight.Remove(c);
        var released = claim.End();
        if (_freeClaims.Count < 64) _freeClaims.Push(claim);
        return released;
    }

    /// <inheritdoc />
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return WriteGatedAsync(offset, data, cancellationToken);
        ValueTask pending;
        try { pending = WriteCoreAsync(offset, data, cancellationToken); }
        catch { _gate.Leave(); throw; }
        return _gate.LeaveWhenDone(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteGatedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await WriteCoreAsync(offset, data, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>The write, inside the gate.</summary>
    private ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        ThrowIfFailed();
        // Fast path: a write that lands in place in one run of allocated clusters needs no state machine of ours.
        if (data.Length > 0 && TryLookupCached(offset, data.Length, out var extent) && extent.Kind == ExtentKind.Data && extent.Length == data.Length)
            return _file.WriteAsync(extent.FileOffset, data, cancellationToken);
        return WriteSlowAsync(offset, data, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteSlowAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            var extent = await LookupAsync(offset, data.Length, cancellationToken).ConfigureAwait(false);
            int n = (int)extent.Length;
            if (extent.Kind == ExtentKind.Data)
                await _file.WriteAsync(extent.FileOffset, data[..n], cancellationToken).ConfigureAwait(false);
            else if (!await AllocateAsync(offset, data[..n], n, extent.Kind, zeroClusters: false, cancellationToken).ConfigureAwait(false))
                continue; // another request changed these clusters: look again
            offset += n;
            data = data[n..];
        }
    }

    /// <inheritdoc />
    public override async ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await WriteZeroesCoreAsync(offset, length, checkRange: true, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>Write-zeroes inside the gate (or by the pausing operation, which may zero past the guest size).</summary>
    private async ValueTask WriteZeroesCoreAsync(long offset, long length, bool checkRange, CancellationToken cancellationToken)
    {
        CheckWritable();
        if (checkRange) CheckRange(offset, length);
        ThrowIfFailed();
        while (length > 0)
        {
            var extent = await LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
            long n = extent.Length;
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    await _file.ZeroRangeAsync(extent.FileOffset, n, cancellationToken).ConfigureAwait(false);
                    break;
                case ExtentKind.Unallocated:
                    n = await ZeroUnallocatedAsync(offset, n, cancellationToken).ConfigureAwait(false);
                    break;
                // A zero cluster already reads as zeroes.
            }
            offset += n;
            length -= n;
        }
    }

    /// <summary>
    /// Zeroes the first piece of an unallocated run: whole clusters become zero clusters (entry 1, which also hides the
    /// backing file); a partial cluster over backing data is allocated and written with zeroes. Returns the bytes
    /// handled, or 0 when the run changed under us and must be looked up again.
    /// </summary>
    private async ValueTask<long> ZeroUnallocatedAsync(long offset, long length, CancellationToken ct)
    {
        long end = offset + length;
        long mask = _clusterSize - 1;
        long wholeStart = (offset + mask) & ~mask;
        long wholeEnd = end & ~mask;
        if (offset == wholeStart && wholeEnd > wholeStart)
        {
            long n = wholeEnd - wholeStart;
            return await AllocateAsync(offset, default, n, ExtentKind.Unallocated, zeroClusters: true, ct).ConfigureAwait(false) ? n : 0;
        }
        long partEnd = Math.Min(end, offset == wholeStart ? offset + _clusterSize : wholeStart);
        long partLength = partEnd - offset;
        if (_backing is null || offset >= _backing.Size) return partLength; // reads as zeroes already
        var zeroes = partLength <= Zeroes.Block.Length ? Zeroes.Block[..(int)partLength] : new byte[partLength];
        return await AllocateAsync(offset, zeroes, partLength, ExtentKind.Unallocated, zeroClusters: false, ct).ConfigureAwait(false) ? partLength : 0;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Whole data clusters keep their L2 entries and have their host range punched out: the space goes back to the host
    /// and the clusters read as zeroes (with or without a backing file, as qcow2 v3 discards), and the image stays
    /// check-clean, since nothing is unmapped. Nothing is freed, so nothing is ever reused: a cluster's file offset
    /// belongs to its guest cluster for as long as the mapping lives (defragment and shrink move or drop mappings only
    /// with every request drained), and a punch can never land on another cluster's data. No metadata changes, so
    /// nothing is ordered against a flush; a crash leaves each sector with its old content or zeroes. Unallocated and
    /// zero clusters, and partial clusters, are left alone: discard is advisory.
    /// </remarks>
    public override async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await DiscardCoreAsync(offset, length, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    private async ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, length);
        ThrowIfFailed();
        long mask = _clusterSize - 1;
        long end = offset + length;
        offset = (offset + mask) & ~mask;
        end &= ~mask;
        while (offset < end)
        {
            // Both ends are cluster aligned, so a data run found here is whole clusters. A data entry never changes
            // while a request is inside the gate, so the run's file offset stays this cluster's until the punch is done.
            var extent = await LookupAsync(offset, end - offset, cancellationToken).ConfigureAwait(false);
            if (extent.Kind == ExtentKind.Data)
                await _file.ZeroRangeAsync(extent.FileOffset, extent.Length, cancellationToken).ConfigureAwait(false);
            offset += extent.Length;
        }
    }

    /// <inheritdoc />
    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_readOnly) return;
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await FlushCoreAsync(cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>Flush inside the gate, or by the pausing operation.</summary>
    private async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        await WriteBackMetadataAsync().ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        ScheduleNeedCheckClear();
    }

    /// <summary>
    /// Allocates the clusters under [offset, offset+length), all of one L2 table and all of <paramref name="kind"/>
    /// (unallocated or zero), and writes <paramref name="data"/> there with the rest of each cluster filled as the
    /// format says; or, with <paramref name="zeroClusters"/>, marks whole clusters as zero clusters. Returns false
    /// when another request got to one of the clusters first, so the caller must look again.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> AllocateAsync(long offset, ReadOnlyMemory<byte> data, long length, ExtentKind kind,
        bool zeroClusters, CancellationToken ct)
    {
        long firstCluster = offset >> _clusterBits;
        int count = (int)(((offset + length - 1) >> _clusterBits) - firstCluster + 1);
        int l1Index = L1IndexOf(offset);
        int l2First = L2IndexOf(offset);
        ulong expected = kind == ExtentKind.Zero ? ZeroClusterEntry : 0;

        // Decided once: a stream may detach the backing file meanwhile. Without one, entries may reach the disk ahead of
        // their data, so NEED_CHECK must be durable first (QedImage.NeedCheck.cs).
        bool backed = _backing != null;
        await BeginAllocationAsync(needsCheckBit: !zeroClusters && !backed, ct).ConfigureAwait(false);
        Claim? mine = null;
        Task? wait = null;
        L2Table? table = null;
        long dataOffset = 0;
        try
        {
            lock (_metaLock)
            {
                for (long c = firstCluster; c < firstCluster + count && wait is null; c++)
                    if (_inflight.TryGetValue(c, out var other)) wait = other.Released;
                if (wait is null && _tables.TryGetValue(l1Index, out var tableTask))
                {
                    if (tableTask.IsCompletedSuccessfully) table = tableTask.Result;
                    else wait = tableTask;
                }
                if (wait is null && (table != null || Volatile.Read(ref _l1[l1Index]) == 0))
                {
                    if (table is null)
                    {
                        // A new table goes first, so the data clusters that follow it are contiguous.
                        table = new L2Table(l1Index, (ulong)Reserve(_tableBytes), new ulong[_entriesPerTable], linked: false);
                        IndexNewTable(l1Index, (long)table.FileOffset);
                        _tables[l1Index] = Task.FromResult(table);
                        Volatile.Write(ref _ready[l1Index], table);
                    }
                    bool unchanged = true;
                    for (int i = 0; i < count && unchanged; i++)
                        unchanged = Volatile.Read(ref table.Entries[l2First + i]) == expected;
                    if (unchanged)
                    {
                        mine = ClaimLocked(firstCluster, count);
                        table.Pins++;
                        if (!zeroClusters) dataOffset = Reserve((long)count * _clusterSize);
                    }
                }
            }
            if (mine is null)
            {
                if (wait != null)
                    try { await wait.WaitAsync(ct).ConfigureAwait(false); } catch (OperationCanceledException) { throw; } catch { }
                return false;
            }

            // From here on the clusters are ours: finish without cancellation, or leak them on an I/O error.
            if (!zeroClusters)
            {
                GrowAheadIfAsked();
                await WriteNewClustersAsync(dataOffset, offset, data, kind).ConfigureAwait(false);
                await CommitEntriesAsync(table!, l2First, count, (ulong)dataOffset, (ulong)_clusterSize, eager: false).ConfigureAwait(false);
            }
            else
            {
                await CommitEntriesAsync(table!, l2First, count, ZeroClusterEntry, 0, eager: false).ConfigureAwait(false);
            }
            return true;
        }
        finally
        {
            if (mine != null)
            {
                TaskCompletionSource? released;
                lock (_metaLock)
                {
                    released = ReleaseLocked(mine, firstCluster, count);
                    table!.Pins--;
                }
                released?.SetResult();
            }
            EndAllocation();
        }
    }

    /// <summary>
    /// Writes guest data into freshly reserved clusters at <paramref name="fileOffset"/>, filling the head and tail of
    /// the clusters: from the backing file for unallocated clusters, zeroes for zero clusters (as the specification
    /// says; QEMU 7.2 copies backing data there, its bug 4). Zero fill is skipped where the file holds no bytes yet.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteNewClustersAsync(long fileOffset, long offset, ReadOnlyMemory<byte> data, ExtentKind kind)
    {
        long mask = _clusterSize - 1;
        long head = offset & mask;
        long end = offset + data.Length;
        long tail = ((end + mask) & ~mask) - end;
        if (head > 0 && NeedsFill(fileOffset, offset - head, kind)) await FillAsync(fileOffset, offset - head, head, kind).ConfigureAwait(false);
        await _file.WriteAsync(fileOffset + head, data).ConfigureAwait(false);
        if (tail > 0 && NeedsFill(fileOffset + head + data.Length, end, kind)) await FillAsync(fileOffset + head + data.Length, end, tail, kind).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether part of a new cluster must be written: with data from the backing file, or with zeroes over stale bytes.
    /// Past the file's length at open nothing was ever written, so there the cluster already reads as zeroes; and
    /// Reserve extended the file over every reserved cluster, so none ends up as a trailing partial one.
    /// </summary>
    private bool NeedsFill(long fileOffset, long guestOffset, ExtentKind kind)
    {
        var backing = _backing;
        return (kind == ExtentKind.Unallocated && backing != null && guestOffset < backing.Size) || fileOffset < _staleEnd;
    }

    private async ValueTask FillAsync(long fileOffset, long guestOffset, long length, ExtentKind kind)
    {
        var backing = _backing;
        bool fromBacking = kind == ExtentKind.Unallocated && backing != null && guestOffset < backing.Size;
        if (!fromBacking)
        {
            await Zeroes.WriteAsync(_file, fileOffset, length, CancellationToken.None).ConfigureAwait(false); // stale bytes
            return;
        }
        var buffer = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            var slice = buffer.AsMemory(0, (int)length);
            await ReadBackingAsync(guestOffset, slice, CancellationToken.None).ConfigureAwait(false);
            await _file.WriteAsync(fileOffset, slice).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
