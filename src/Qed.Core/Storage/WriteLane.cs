using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// Buffered writes to one file, done one after another by a single thread-pool thread at a time.
/// </summary>
/// <remarks>
/// Linux filesystems (ext4, XFS, btrfs) run buffered writes to one file under its inode lock, one at a time; with
/// writes queued on several threads the waiters spin on that lock, and on a small machine the spinning took about a
/// sixth of the CPU that the requests' own work needed. Here a write joins a queue, and whichever thread drains it
/// issues the writes back to back while the other cores run the requests' continuations. When the queue runs dry the
/// drainer stops draining before it completes the last write, so that write's continuation may run inline (as a
/// thread-pool write would) and anything it waits on synchronously is drained by a fresh worker, never by itself.
/// Only for writes that do not sync: O_DSYNC writes overlap their syncs when issued in parallel.
/// </remarks>
internal sealed class WriteLane : IThreadPoolWorkItem
{
    private readonly SafeFileHandle _handle;
    private readonly ConcurrentQueue<Op> _queue = new();
    private readonly ConcurrentQueue<Op> _free = new();
    private int _draining; // 1 while a drainer runs; whoever moves it from 0 to 1 starts one

    public WriteLane(SafeFileHandle handle) => _handle = handle;

    /// <summary>Queues a write of all of <paramref name="data"/> at <paramref name="offset"/>.</summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled(cancellationToken);
        if (!_free.TryDequeue(out var op)) op = new Op(this);
        op.Offset = offset;
        op.Data = data;
        var pending = new ValueTask(op, op.Core.Version);
        _queue.Enqueue(op);
        if (Interlocked.CompareExchange(ref _draining, 1, 0) == 0) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);
        return pending;
    }

    /// <summary>The drainer: writes until the queue is empty.</summary>
    void IThreadPoolWorkItem.Execute()
    {
        while (true)
        {
            if (!_queue.TryDequeue(out var op))
            {
                // Stop, unless a write was queued after the check by someone who saw this drainer still running.
                // (Exchange, not a plain store: the store must be visible before the queue is looked at again.)
                Interlocked.Exchange(ref _draining, 0);
                if (_queue.IsEmpty || Interlocked.CompareExchange(ref _draining, 1, 0) != 0) return;
                continue;
            }
            Exception? error = null;
            try { RandomAccess.Write(_handle, op.Data.Span, op.Offset); }
            catch (Exception e) { error = e; }
            bool last = false;
            if (_queue.IsEmpty)
            {
                Interlocked.Exchange(ref _draining, 0);
                last = _queue.IsEmpty || Interlocked.CompareExchange(ref _draining, 1, 0) != 0;
            }
            // More queued: hand the continuation to another thread and keep writing. The last: run it here.
            op.Core.RunContinuationsAsynchronously = !last;
            if (error is null) op.Core.SetResult(true);
            else op.Core.SetException(error);
            if (last) return;
        }
    }

    private void Return(Op op)
    {
        op.Data = default;
        op.Core.Reset();
        _free.Enqueue(op);
    }

    /// <summary>One queued write; reused once its result has been taken.</summary>
    private sealed class Op(WriteLane lane) : IValueTaskSource
    {
        public ManualResetValueTaskSourceCore<bool> Core;
        public long Offset;
        public ReadOnlyMemory<byte> Data;

        public void GetResult(short token)
        {
            try { Core.GetResult(token); }
            finally { lane.Return(this); }
        }

        public ValueTaskSourceStatus GetStatus(short token) => Core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            Core.OnCompleted(continuation, state, token, flags);
    }
}
