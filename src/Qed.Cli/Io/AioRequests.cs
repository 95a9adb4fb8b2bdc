namespace Qed.Cli.Io;

/// <summary>
/// The aio requests in flight: each runs alongside later commands and prints its own result when it completes;
/// aio_flush, close and exit wait for all of them.
/// </summary>
internal sealed class AioRequests
{
    private readonly List<Task> _inFlight = [];

    /// <summary>Starts <paramref name="request"/> on the thread pool; true (the command itself succeeded).</summary>
    public bool Launch(Func<Task<bool>> request)
    {
        var task = Task.Run(request);
        lock (_inFlight) _inFlight.Add(task);
        return true;
    }

    /// <summary>Waits for the requests started so far.</summary>
    public async Task DrainAsync()
    {
        Task[] pending;
        lock (_inFlight) { pending = [.. _inFlight]; _inFlight.Clear(); }
        await Task.WhenAll(pending);
    }
}
