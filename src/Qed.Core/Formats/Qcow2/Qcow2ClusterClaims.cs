namespace Qed.Formats.Qcow2;

/// <summary>
/// Guest clusters whose allocation is in flight: between taking new host clusters and publishing the L2 entries that
/// map them, a run of guest clusters is claimed, so that a second request for any of them waits for the first and
/// then looks again, instead of allocating the same guest cluster twice.
/// </summary>
/// <remarks>
/// Invariants: a guest cluster has at most one claim; a claim is released only by the request that made it (a later
/// claim of the same cluster is never removed by an earlier one's release); release always signals, so no waiter is
/// left behind, including when the allocation failed. Claims are checked and made while the caller holds the image's
/// allocation lock (so check-then-claim is atomic with the lookup that decided to allocate); the map itself has its own
/// lock because release happens outside the allocation lock. Format-neutral: keys are guest cluster indexes.
/// </remarks>
internal sealed class Qcow2ClusterClaims
{
    private readonly Dictionary<long, TaskCompletionSource> _claims = new();

    /// <summary>The signal of an in-flight claim on any of guest clusters [<paramref name="first"/>, <paramref name="last"/>], or null.</summary>
    public Task? InFlight(long first, long last)
    {
        lock (_claims)
        {
            for (long c = first; c <= last; c++)
                if (_claims.TryGetValue(c, out var t)) return t.Task;
        }
        return null;
    }

    /// <summary>Claims guest clusters [<paramref name="first"/>, <paramref name="last"/>] (none of which is claimed: see
    /// <see cref="InFlight"/>); the returned token releases them.</summary>
    public TaskCompletionSource Claim(long first, long last)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_claims)
            for (long c = first; c <= last; c++) _claims[c] = done;
        return done;
    }

    /// <summary>Releases the clusters <paramref name="token"/> still claims in [<paramref name="first"/>, <paramref name="last"/>] and wakes its waiters.</summary>
    public void Release(long first, long last, TaskCompletionSource token)
    {
        lock (_claims)
            for (long c = first; c <= last; c++)
                if (_claims.TryGetValue(c, out var t) && t == token) _claims.Remove(c);
        token.TrySetResult();
    }

    /// <summary>How many guest clusters are claimed (for tests).</summary>
    public int Count { get { lock (_claims) return _claims.Count; } }
}
