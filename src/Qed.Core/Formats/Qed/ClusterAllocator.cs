using System.Diagnostics;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// Hands out new clusters from the end of the file and keeps the file long enough to hold them.
/// </summary>
/// <remarks>
/// State, all owned here: <c>_fileEnd</c>, the next free cluster-aligned offset (only grows, except when a paused
/// maintenance step cuts the file); <c>_staleEnd</c>, the file's length at open or after a synced truncation, below
/// which bytes may be stale; <c>_extendedTo</c>, the length this session set, never below a reserved cluster; and
/// <c>_growAheadTo</c>, 0, or the length a reservation asked its allocation to grow the file to outside the lock
/// (-1 while it does). Invariants: <c>_fileEnd ≤ _extendedTo</c> after every reservation, so a reserved cluster lies
/// wholly inside the file even if its tail is never written; a cluster is never handed out twice. The cursor is
/// guarded by the metadata lock the image hands in (reservations are part of one allocation's lock section, with
/// the claims and the table cache); file growth by a lock of its own, so growing never races another grow.
/// </remarks>
internal sealed class ClusterAllocator
{
    /// <summary>The least the file grows by (few growth calls; a crash leaks at most a step and a half).</summary>
    public const long GrowStep = 4L << 20;

    private readonly IBlockStorage _file;
    private readonly int _clusterSize;
    private readonly Lock _metaLock;
    private readonly Lock _growLock = new();
    private long _fileEnd;
    private long _staleEnd;
    private long _extendedTo;
    private long _growAheadTo;

    /// <summary>Starts the cursor at the last whole cluster of a file of <paramref name="length"/> bytes.</summary>
    public ClusterAllocator(IBlockStorage file, int clusterSize, long length, Lock metaLock)
    {
        _file = file;
        _clusterSize = clusterSize;
        _metaLock = metaLock;
        _fileEnd = length / clusterSize * clusterSize;
        _staleEnd = length;
        _extendedTo = length;
    }

    /// <summary>The next free cluster-aligned offset: every allocated cluster lies below it.</summary>
    public long FileEnd => Volatile.Read(ref _fileEnd);

    /// <summary>Below this offset a new cluster may hold stale bytes and needs zero fill where it is not written.</summary>
    public long StaleEnd => Volatile.Read(ref _staleEnd);

    /// <summary>
    /// Takes <paramref name="bytes"/> (a cluster multiple) from the end of the file. The file always covers every
    /// reserved cluster. It grows in steps of at least 4 MiB, as reserved space where the filesystem allows
    /// (fallocate): new clusters then fill reserved extents, which the kernel takes faster than holes. Caller holds
    /// the metadata lock.
    /// </summary>
    /// <remarks>
    /// Growing takes the inode lock, so it waits for the buffered write in progress. Done under the metadata lock it
    /// stalled every allocation behind it; so when the reserved clusters come within half a step of the end, this only
    /// asks for the next step, and the allocation that asked grows the file after leaving the lock
    /// (<see cref="GrowAheadIfAsked"/>). Growing here, under the lock, is left for when allocations outrun that.
    /// </remarks>
    public long ReserveLocked(long bytes)
    {
        Debug.Assert(_metaLock.IsHeldByCurrentThread);
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

    /// <summary>As <see cref="ReserveLocked"/>, taking the lock (maintenance, outside an allocation's section).</summary>
    public long Reserve(long bytes)
    {
        lock (_metaLock) return ReserveLocked(bytes);
    }

    /// <summary>Grows the file to the length a reservation asked for, if it did; outside the metadata lock.</summary>
    /// <remarks>
    /// Only requests grow ahead (never the pausing operations that cut the file, which run with none in flight), and
    /// one at a time. A failure is left for the reservation: when the allocations reach the end it grows under the lock
    /// and reports the error to the request that needed the space.
    /// </remarks>
    public void GrowAheadIfAsked()
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

    /// <summary>The length <see cref="TrimAsync"/> would cut the file to now: past it lies only growth slack.</summary>
    public long TrimmedLength
    {
        get { lock (_metaLock) return Math.Max(_fileEnd, _staleEnd); }
    }

    /// <summary>On close: trims the extension slack, keeping every cluster reserved and whatever was there at open.</summary>
    public async Task TrimAsync()
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

    /// <summary>
    /// Cuts the file at <paramref name="end"/>, past which nothing is referenced (metadata is durable, the request gate
    /// is paused), and syncs; from then on new clusters come from there and read as zeroes until written.
    /// </summary>
    public async Task TruncateToAsync(long end)
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
        lock (_metaLock) Volatile.Write(ref _staleEnd, Math.Min(_staleEnd, end));
    }
}
