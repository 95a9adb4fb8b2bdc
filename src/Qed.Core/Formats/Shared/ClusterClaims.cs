using System.Diagnostics;

namespace Qed.Formats.Shared;

/// <summary>
/// Guest clusters whose allocation is in flight, and who holds them: two requests that would allocate the same
/// cluster agree through it, the second waiting for the first's hold to end and then looking again. Format-neutral
/// (the clusters are guest cluster indexes), for any format that allocates on write.
/// </summary>
/// <remarks>
/// Invariants: a cluster is held by at most one claim; a release removes only clusters its own claim holds, and its
/// waiters are signalled only after that, outside the lock. The map is guarded by one lock, used in either of two
/// ways:
/// <list type="bullet">
/// <item>Handed in by the image (QED's metadata lock): the allocation's one lock section already holds it (its table
/// lookup and cluster reservation run in the same section) and calls the <c>...Locked</c> methods, so claiming costs
/// no lock of its own.</item>
/// <item>Owned (the parameterless constructor; qcow2, whose allocation lock is async and cannot be this lock): the
/// caller serialises find-then-claim itself (under its allocation lock) and calls <see cref="FindHolder"/>,
/// <see cref="Take"/> and <see cref="Release(Hold, long, int)"/>, each taking this lock for its own bookkeeping
/// only. A <see cref="Hold"/> names one use of a claim, so a stale or repeated release of it frees nothing.</item>
/// </list>
/// The signal a waiter waits on is made only when someone waits, and released claims are reused, so an allocating
/// write costs no allocation here.
/// </remarks>
internal sealed class ClusterClaims(Lock guard)
{
    private const int MaxFreeClaims = 64;
    private readonly Dictionary<long, Claim> _inflight = new();
    private readonly Stack<Claim> _free = new();

    /// <summary>Claims guarded by a lock of their own: see the remarks.</summary>
    public ClusterClaims() : this(new Lock()) { }

    /// <summary>One request's hold on the clusters it is changing.</summary>
    public sealed class Claim
    {
        private TaskCompletionSource? _released; // under the claims' lock

        /// <summary>How many times this claim was released: tells a <see cref="Hold"/> from a stale one. Under the claims' lock.</summary>
        internal int Uses;

        /// <summary>What a request that needs these clusters waits for. Under the claims' lock.</summary>
        internal Task Released => (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>Ends the hold: returns the signal to set once out of the lock, if anyone waits. Under the claims' lock.</summary>
        internal TaskCompletionSource? End()
        {
            var released = _released;
            _released = null;
            Uses++;
            return released;
        }
    }

    /// <summary>One use of a <see cref="Claim"/>, from <see cref="Take"/>: releasing it once more, or after the claim
    /// was reused, does nothing.</summary>
    public readonly record struct Hold(Claim Claim, int Use);

    /// <summary>Clusters held now (for tests).</summary>
    public int CountLocked
    {
        get { Debug.Assert(guard.IsHeldByCurrentThread); return _inflight.Count; }
    }

    /// <summary>Clusters held now (for tests); takes the lock.</summary>
    public int Count
    {
        get { lock (guard) return _inflight.Count; }
    }

    /// <summary>
    /// What to wait for if one of <paramref name="count"/> clusters from <paramref name="firstCluster"/> is held, else
    /// null. Caller holds the lock.
    /// </summary>
    public Task? FindHolderLocked(long firstCluster, int count)
    {
        Debug.Assert(guard.IsHeldByCurrentThread);
        for (long c = firstCluster; c < firstCluster + count; c++)
            if (_inflight.TryGetValue(c, out var other)) return other.Released;
        return null;
    }

    /// <summary>Holds <paramref name="count"/> clusters from <paramref name="firstCluster"/> (none of them held). Caller holds the lock.</summary>
    public Claim ClaimLocked(long firstCluster, int count)
    {
        Debug.Assert(guard.IsHeldByCurrentThread);
        var claim = _free.TryPop(out var free) ? free : new Claim();
        for (long c = firstCluster; c < firstCluster + count; c++) _inflight[c] = claim;
        return claim;
    }

    /// <summary>
    /// Releases a claim and keeps it for reuse; returns the signal to set once out of the lock (null if nobody waits).
    /// Clusters in the range held by another claim stay held. Caller holds the lock.
    /// </summary>
    public TaskCompletionSource? ReleaseLocked(Claim claim, long firstCluster, int count)
    {
        Debug.Assert(guard.IsHeldByCurrentThread);
        for (long c = firstCluster; c < firstCluster + count; c++)
            if (_inflight.Remove(c, out var holder) && holder != claim) _inflight[c] = holder; // not ours: put back
        var released = claim.End();
        if (_free.Count < MaxFreeClaims) _free.Push(claim);
        return released;
    }

    /// <summary>
    /// <see cref="FindHolderLocked"/> under this lock: what to wait for if one of the clusters is held, else null. For a
    /// caller that does not hold the lock; it keeps the answer true until <see cref="Take"/> by serialising its own
    /// find-then-take.
    /// </summary>
    public Task? FindHolder(long firstCluster, int count)
    {
        lock (guard) return FindHolderLocked(firstCluster, count);
    }

    /// <summary><see cref="ClaimLocked"/> under this lock: holds the clusters (none of them held) until the returned hold is released.</summary>
    public Hold Take(long firstCluster, int count)
    {
        lock (guard)
        {
            var claim = ClaimLocked(firstCluster, count);
            return new Hold(claim, claim.Uses);
        }
    }

    /// <summary>
    /// Ends <paramref name="hold"/> and wakes its waiters (after leaving the lock); a hold already released, whose claim
    /// may now serve another request, is left alone.
    /// </summary>
    public void Release(Hold hold, long firstCluster, int count)
    {
        TaskCompletionSource? released;
        lock (guard)
        {
            if (hold.Claim.Uses != hold.Use) return;
            released = ReleaseLocked(hold.Claim, firstCluster, count);
        }
        released?.SetResult();
    }
}
