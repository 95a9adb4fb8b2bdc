using System.Runtime.CompilerServices;

namespace Qed;

/// <summary>
/// Lets a maintenance operation (defragment, online resize) pause an image: new requests wait, requests in flight
/// drain, the operation runs one short batch with the image to itself, then requests resume.
/// </summary>
/// <remarks>
/// Cheap when nothing is paused: entering is one interlocked increment and one volatile read, leaving one interlocked
/// decrement (and a volatile read when the count reaches zero); nothing is allocated.
/// The handshake is the store-load pattern: a request increments <c>_active</c> (a full fence) and then reads
/// <c>_paused</c>; a pauser sets <c>_paused</c> (a full fence) and then reads <c>_active</c>. Whatever the
/// interleaving, either the request sees the pause and backs out, or the pauser sees the request and waits for it to
/// leave. So once <see cref="PauseAsync"/> returns, no request is inside, and none can get in until
/// <see cref="Resume"/>.
/// Work done by the pausing operation itself must not enter the gate: it would wait for its own resume.
/// </remarks>
internal sealed class RequestGate
{
    private int _active;          // requests inside, plus transiently those backing out of a pause
    private volatile int _paused; // 1 while a batch runs or waits for the drain
    private readonly SemaphoreSlim _pausers = new(1, 1);
    private TaskCompletionSource _drained = Completed();
    private TaskCompletionSource _resumed = Completed();
    private int _waited;          // requests that found the gate paused since the last RunPausedAsync began

    private static TaskCompletionSource Completed()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tcs.SetResult();
        return tcs;
    }

    /// <summary>Enters without waiting; false (and not entered) while paused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryEnter()
    {
        Interlocked.Increment(ref _active);
        if (_paused == 0) return true;
        Leave();
        return false;
    }

    /// <summary>Leaves; the last request out of a paused gate lets the pauser go on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Leave()
    {
        if (Interlocked.Decrement(ref _active) == 0 && _paused != 0) Volatile.Read(ref _drained).TrySetResult();
    }

    /// <summary>Enters, waiting while the gate is paused.</summary>
    public ValueTask EnterAsync(CancellationToken ct) => TryEnter() ? ValueTask.CompletedTask : EnterSlowAsync(ct);

    private async ValueTask EnterSlowAsync(CancellationToken ct)
    {
        Interlocked.Increment(ref _waited);
        while (true)
        {
            await Volatile.Read(ref _resumed).Task.WaitAsync(ct).ConfigureAwait(false);
            if (TryEnter()) return;
        }
    }

    /// <summary>Leaves once <paramref name="pending"/> completes, without a state machine when it already has.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask LeaveWhenDone(ValueTask pending)
    {
        if (pending.IsCompletedSuccessfully)
        {
            pending.GetAwaiter().GetResult(); // releases a pooled source
            Leave();
            return ValueTask.CompletedTask;
        }
        return LeaveAfterAsync(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask LeaveAfterAsync(ValueTask pending)
    {
        try { await pending.ConfigureAwait(false); }
        finally { Leave(); }
    }

    /// <summary>Leaves once <paramref name="pending"/> completes, without a state machine when it already has.</summary>
    public ValueTask<T> LeaveWhenDone<T>(ValueTask<T> pending)
    {
        if (pending.IsCompletedSuccessfully)
        {
            var result = pending.GetAwaiter().GetResult();
            Leave();
            return ValueTask.FromResult(result);
        }
        return LeaveAfterAsync(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<T> LeaveAfterAsync<T>(ValueTask<T> pending)
    {
        try { return await pending.ConfigureAwait(false); }
        finally { Leave(); }
    }

    /// <summary>
    /// Pauses: stops new requests and waits until those inside have left. One pauser at a time; every successful
    /// call must be followed by <see cref="Resume"/>.
    /// </summary>
    public async Task PauseAsync(CancellationToken ct)
    {
        await _pausers.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            Volatile.Write(ref _resumed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            Interlocked.Exchange(ref _paused, 1);
            // Reading zero after the pause is visible is conclusive: a request that increments later sees the pause.
            // A signal may come from a request that left before the pause and so be early: hence the loop. A request
            // that takes the count to zero after this iteration's check reads this iteration's signal (or a newer one).
            while (true)
            {
                var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Interlocked.Exchange(ref _drained, drained); // a full fence: published before the count is read
                if (Volatile.Read(ref _active) == 0) break;
                await drained.Task.ConfigureAwait(false); // not cancellable: requests finish on their own
            }
        }
        catch
        {
            Release();
            throw;
        }
    }

    /// <summary>Ends a pause: waiting requests go on.</summary>
    public void Resume() => Release();

    private void Release()
    {
        Interlocked.Exchange(ref _paused, 0);
        Volatile.Read(ref _resumed).TrySetResult();
        _pausers.Release();
    }

    /// <summary>
    /// Pauses, runs <paramref name="batch"/> with the image to itself, and resumes; then, if requests had to wait,
    /// gives them at least as long as the batch took before returning, so maintenance takes at most about half the
    /// time of a busy image and never starves it. On an idle image batches follow each other at once.
    /// </summary>
    public async Task<T> RunPausedAsync<T>(Func<Task<T>> batch, CancellationToken ct)
    {
        Volatile.Write(ref _waited, 0);
        await PauseAsync(ct).ConfigureAwait(false);
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        T result;
        try { result = await batch().ConfigureAwait(false); }
        finally { Resume(); }
        if (Volatile.Read(ref _waited) > 0)
        {
            var took = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Clamp(took.TotalMilliseconds, 1, 100)), CancellationToken.None).ConfigureAwait(false);
        }
        return result;
    }
}
