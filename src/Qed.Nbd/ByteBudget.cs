namespace Qed.Nbd;

/// <summary>
/// Bounds the payload bytes one connection holds at once (WRITE data waiting to be applied, READ replies waiting to
/// be sent). Only the connection's reader acquires, so one waiter at a time is enough; completions release.
/// </summary>
internal sealed class ByteBudget(long capacity)
{
    private readonly Lock _lock = new();
    private long _available = capacity;
    private long _wanted;
    private TaskCompletionSource? _waiter;

    /// <summary>Takes <paramref name="bytes"/> (at most the capacity), waiting for releases if needed.</summary>
    public ValueTask AcquireAsync(long bytes, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_available >= bytes)
            {
                _available -= bytes;
                return ValueTask.CompletedTask;
            }
            _wanted = bytes;
            _waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return new ValueTask(_waiter.Task.WaitAsync(cancellationToken));
        }
    }

    /// <summary>Gives back bytes taken earlier.</summary>
    public void Release(long bytes)
    {
        if (bytes == 0) return;
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            _available += bytes;
            if (_waiter != null && _available >= _wanted)
            {
                _available -= _wanted;
                wake = _waiter;
                _waiter = null;
            }
        }
        wake?.TrySetResult();
    }
}
