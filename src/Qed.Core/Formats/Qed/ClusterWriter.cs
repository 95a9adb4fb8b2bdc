using System.Buffers;
using System.Runtime.CompilerServices;
using Qed.Formats.Shared;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// The write path below the request gate: in-place writes, allocating writes, write-zeroes, discard and flush.
/// </summary>
/// <remarks>
/// Crash-safety rules (docs/crash-safety.md): a new cluster is written (and, with a backing file, flushed) before any L2
/// entry on disk points at it (<see cref="MetadataWriteBack"/> orders that); clusters come from the end of the file and
/// are never reused (<see cref="ClusterAllocator"/>), so a crash can leak space but never alias data; without a backing
/// file, entries may reach the disk before their data, which NEED_CHECK covers (<see cref="NeedCheckTracker"/>).
/// Allocations of different clusters run concurrently; two requests for the same cluster agree through
/// <see cref="ClusterClaims"/>. This type holds no state of its own: each allocation's one section under the metadata
/// lock (handed in by the image, which owns it) checks the claims, finds or creates the table, claims the clusters,
/// pins the table and reserves the clusters in one step, each through its owner's <c>...Locked</c> method.
/// </remarks>
internal sealed class ClusterWriter(IBlockStorage file, QedGeometry geometry, L1Table l1, L2TableCache cache,
    EntryValidator validator, ClusterAllocator allocator, ClusterClaims claims, MetadataWriteBack writeBack,
    NeedCheckTracker needCheck, BackingChain backing, Lock metaLock)
{
    private readonly QedGeometry _g = geometry;

    /// <summary>Writes guest data at <paramref name="offset"/>, allocating clusters that are not yet.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            var extent = await cache.LookupAsync(offset, data.Length, cancellationToken).ConfigureAwait(false);
            int n = (int)extent.Length;
            if (extent.Kind == ExtentKind.Data)
                await file.WriteAsync(extent.FileOffset, data[..n], cancellationToken).ConfigureAwait(false);
            else if (!await AllocateAsync(offset, data[..n], n, extent.Kind, zeroClusters: false, cancellationToken).ConfigureAwait(false))
                continue; // another request changed these clusters: look again
            offset += n;
            data = data[n..];
        }
    }

    /// <summary>Makes [offset, offset+length) read as zeroes (the caller checked the range, or may zero past the size).</summary>
    public async ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken)
    {
        while (length > 0)
        {
            var extent = await cache.LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
            long n = extent.Length;
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    await file.ZeroRangeAsync(extent.FileOffset, n, cancellationToken).ConfigureAwait(false);
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
        long wholeStart = _g.RoundUp(offset);
        long wholeEnd = _g.RoundDown(end);
        if (offset == wholeStart && wholeEnd > wholeStart)
        {
            long n = wholeEnd - wholeStart;
            return await AllocateAsync(offset, default, n, ExtentKind.Unallocated, zeroClusters: true, ct).ConfigureAwait(false) ? n : 0;
        }
        long partEnd = Math.Min(end, offset == wholeStart ? offset + _g.ClusterSize : wholeStart);
        long partLength = partEnd - offset;
        if (!backing.Covers(offset)) return partLength; // reads as zeroes already
        var zeroes = partLength <= Zeroes.Block.Length ? Zeroes.Block[..(int)partLength] : new byte[partLength];
        return await AllocateAsync(offset, zeroes, partLength, ExtentKind.Unallocated, zeroClusters: false, ct).ConfigureAwait(false) ? partLength : 0;
    }

    /// <summary>Punches out the whole data clusters under [offset, offset+length); see <see cref="QedImage.DiscardAsync"/>.</summary>
    public async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken)
    {
        long end = _g.RoundDown(offset + length);
        offset = _g.RoundUp(offset);
        while (offset < end)
        {
            // Both ends are cluster aligned, so a data run found here is whole clusters. A data entry never changes
            // while a request is inside the gate, so the run's file offset stays this cluster's until the punch is done.
            var extent = await cache.LookupAsync(offset, end - offset, cancellationToken).ConfigureAwait(false);
            if (extent.Kind == ExtentKind.Data)
                await file.ZeroRangeAsync(extent.FileOffset, extent.Length, cancellationToken).ConfigureAwait(false);
            offset += extent.Length;
        }
    }

    /// <summary>Writes back dirty metadata, syncs, and lets NEED_CHECK clear once the image goes idle.</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        await writeBack.WriteBackAsync().ConfigureAwait(false);
        await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        needCheck.ScheduleClear();
    }

    /// <summary>
    /// Allocates the clusters under [offset, offset+length), all of one L2 table and all of <paramref name="kind"/>
    /// (unallocated or zero), and writes <paramref name="data"/> there with the rest of each cluster filled as the
    /// format says; or, with <paramref name="zeroClusters"/>, marks whole clusters as zero clusters. Returns false
    /// when another request got to one of the clusters first, so the caller must look again.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> AllocateAsync(long offset, ReadOnlyMemory<byte> data, long length, ExtentKind kind,
        bool zeroClusters, CancellationToken ct)
    {
        long firstCluster = _g.ClusterOf(offset);
        int count = (int)(_g.ClusterOf(offset + length - 1) - firstCluster + 1);
        int l1Index = _g.L1IndexOf(offset);
        int l2First = _g.L2IndexOf(offset);
        ulong expected = kind == ExtentKind.Zero ? EntryValidator.ZeroClusterEntry : 0;

        // Decided once: a stream may detach the backing file meanwhile. Without one, entries may reach the disk ahead of
        // their data, so NEED_CHECK must be durable first, and the table in the recovery record.
        bool backed = backing.Current != null;
        await needCheck.BeginAllocationAsync(needsCheckBit: !zeroClusters && !backed, l1Index, ct).ConfigureAwait(false);
        ClusterClaims.Claim? mine = null;
        Task? wait;
        L2Table? table = null;
        long dataOffset = 0;
        try
        {
            lock (metaLock)
            {
                wait = claims.FindHolderLocked(firstCluster, count);
                if (wait is null) table = cache.FindLocked(l1Index, out wait);
                if (wait is null && (table != null || l1[l1Index] == 0))
                {
                    if (table is null)
                    {
                        // A new table goes first, so the data clusters that follow it are contiguous.
                        table = new L2Table(l1Index, (ulong)allocator.ReserveLocked(_g.TableBytes), new ulong[_g.EntriesPerTable], linked: false);
                        validator.AddTable(l1Index, (long)table.FileOffset);
                        cache.AddNewLocked(table);
                    }
                    bool unchanged = true;
                    for (int i = 0; i < count && unchanged; i++)
                        unchanged = table.Entry(l2First + i) == expected;
                    if (unchanged)
                    {
                        mine = claims.ClaimLocked(firstCluster, count);
                        cache.PinLocked(table);
                        if (!zeroClusters) dataOffset = allocator.ReserveLocked((long)count * _g.ClusterSize);
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
                allocator.GrowAheadIfAsked();
                await WriteNewClustersAsync(dataOffset, offset, data, kind).ConfigureAwait(false);
                await writeBack.CommitEntriesAsync(table!, l2First, count, (ulong)dataOffset, (ulong)_g.ClusterSize, eager: false).ConfigureAwait(false);
            }
            else
            {
                await writeBack.CommitEntriesAsync(table!, l2First, count, EntryValidator.ZeroClusterEntry, 0, eager: false).ConfigureAwait(false);
            }
            return true;
        }
        finally
        {
            if (mine != null)
            {
                TaskCompletionSource? released;
                lock (metaLock)
                {
                    released = claims.ReleaseLocked(mine, firstCluster, count);
                    cache.UnpinLocked(table!);
                }
                released?.SetResult();
            }
            needCheck.EndAllocation();
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
        long head = _g.InCluster(offset);
        long end = offset + data.Length;
        long tail = _g.RoundUp(end) - end;
        if (head > 0 && NeedsFill(fileOffset, offset - head, kind)) await FillAsync(fileOffset, offset - head, head, kind).ConfigureAwait(false);
        await file.WriteAsync(fileOffset + head, data).ConfigureAwait(false);
        if (tail > 0 && NeedsFill(fileOffset + head + data.Length, end, kind)) await FillAsync(fileOffset + head + data.Length, end, tail, kind).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether part of a new cluster must be written: with data from the backing file, or with zeroes over stale bytes.
    /// Past the file's length at open nothing was ever written, so there the cluster already reads as zeroes; and the
    /// allocator extended the file over every reserved cluster, so none ends up as a trailing partial one.
    /// </summary>
    private bool NeedsFill(long fileOffset, long guestOffset, ExtentKind kind) =>
        (kind == ExtentKind.Unallocated && backing.Covers(guestOffset)) || fileOffset < allocator.StaleEnd;

    private async ValueTask FillAsync(long fileOffset, long guestOffset, long length, ExtentKind kind)
    {
        if (!(kind == ExtentKind.Unallocated && backing.Covers(guestOffset)))
        {
            await Zeroes.WriteAsync(file, fileOffset, length, CancellationToken.None).ConfigureAwait(false); // stale bytes
            return;
        }
        var buffer = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            var slice = buffer.AsMemory(0, (int)length);
            await backing.ReadAsync(guestOffset, slice, CancellationToken.None).ConfigureAwait(false);
            await file.WriteAsync(fileOffset, slice).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
