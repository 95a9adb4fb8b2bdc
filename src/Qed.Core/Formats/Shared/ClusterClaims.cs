using System.Diagnostics;

namespace Qed.Formats.Shared;

/// <summary>
/// Guest clusters whose allocation is in flight, and who holds them: two requests that would allocate the same
/// cluster agree through it, the second waiting for the first's hold to end and then looking again. Format-neutral
/// (the clusters are guest cluster indexes), for any format that allocates on write.
/// </summary>
/// <remarks>
/// Invariants: a cluster is held by at most one claim; a claim's clusters are all removed when it is released, and
/// its waiters are signalled only after that, outside the lock. The map is guarded by the lock the image hands in,
/// which the allocation's one lock section already holds (its table lookup and cluster reservation run in the same
/// section), so claiming costs no lock of its own. The signal a waiter waits on is made only when someone waits, and
/// released claims are reused, so an allocating write costs no allocation here.
/// </remarks>
internal sealed class ClusterClaims(Lock guard)
{
    private const int MaxFreeClaims = 64;
    private readonly Dictionary<long, Claim> _inflight = new();
    private readonly Stack<Claim> _free = new();

    /// <summary>One request's hold on the clusters it is changing.</summary>
    public sealed class Claim
    {
        private TaskCompletionSource? _released; // under the claims' lock

        /// <summary>What a request that needs these clusters waits for. Under the claims' lock.</summary>
        internal Task Released => (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>Ends the hold: returns the signal to set once out of the lock, if anyone waits. Under the claims' lock.</summary>
        internal TaskCompletionSource? End()
        {
            var released = _released;
            _released = null;
            return released;
        }
    }

    /// <summary>Clusters held now (for tests).</summary>
    public int CountLocked
    {
        get { Debug.Assert(guard.IsHeldByCurrentThread); return _inflight.Count; }
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
    /// Caller holds the lock.
    /// </summary>
    public TaskCompletionSource? ReleaseLocked(Claim claim, long firstCluster, int count)
    {
        Debug.Assert(guard.IsHeldByCurrentThread);
        for (long c = firstCluster; c < firstCluster + count; c++) _inflight.Remove(c);
        var released = claim.End();
        if (_free.Count < MaxFreeClaims) _free.Push(claim);
        return released;
    }
}
