namespace Qed.Storage;

/// <summary>
/// Group commit for flushes: a caller needs a sync that started after its own writes completed; callers that arrive
/// while one runs share the next. N concurrent allocating writes then cost about two syncs, not N.
/// </summary>
internal sealed class SyncCoalescer(Func<Task> sync)
{
    private readonly Lock _lock = new();
    private long _tickets;   // callers so far
    private long _covered;   // every ticket up to this one is durable
    private Task? _running;

    /// <summary>Returns once a sync that started after this call has completed.</summary>
    public async Task SyncAsync()
    {
        long mine;
        lock (_lock) mine = ++_tickets;
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_covered >= mine) return;
                wait = _running ??= RunAsync(_tickets);
            }
            await wait.ConfigureAwait(false);
        }
    }

    private async Task RunAsync(long upTo)
    {
        await Task.Yield(); // start outside the caller's lock
        try
        {
            await sync().ConfigureAwait(false);
            lock (_lock) _covered = Math.Max(_covered, upTo);
        }
        finally
        {
            lock (_lock) _running = null;
        }
    }
}
