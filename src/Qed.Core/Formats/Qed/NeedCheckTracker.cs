namespace Qed.Formats.Qed;

/// <summary>
/// The NEED_CHECK bit's life cycle. Without a backing file, L2 entries may reach the disk before the data they point
/// at (no flush orders them), so the bit is made durable before the first such allocation and cleared only after a
/// flush with no allocation in flight; an image opened with it set was checked and repaired first.
/// </summary>
/// <remarks>
/// The clear waits for the image to go idle (as QEMU does): clearing at every flush, only to set the bit again at the
/// next allocation, cost a write-flush loop three extra syncs per flush. State owned here, under this type's own
/// lock: the allocations in flight, whether the bit is on disk, the set or clear running, the idle timer and whether
/// the image is closing. Invariants: no allocation that needs the bit begins before the set it waits for is
/// durable; a clear starts only with no allocation in flight and none begins while it runs; an image opened with
/// the bit set and not repaired (<c>keep</c>) keeps it until a check clears it. With the bit set, an allocation that
/// needs it also waits until its table is in the recovery record (<see cref="RecoveryRecordWriter"/>), which starts
/// with each set and ends with each clear.
/// </remarks>
/// <param name="header">The header area's writer.</param>
/// <param name="record">The recovery record, started with each setting of the bit and ended with each clear.</param>
/// <param name="cleanFileEnd">The allocation cursor, recorded as the clean file end when an epoch starts.</param>
/// <param name="keep">The image was opened with the bit set and not repaired: it stays set.</param>
/// <param name="clearDelay">How long the image must be idle after a flush before the bit is cleared.</param>
internal sealed class NeedCheckTracker(HeaderWriter header, RecoveryRecordWriter record, Func<long> cleanFileEnd, bool keep, TimeSpan clearDelay)
{
    private readonly Lock _lock = new();
    private int _activeAllocations;
    private bool _onDisk = header.Current.NeedsCheck;
    private Task? _setting;
    private Task? _clearing;
    private Timer? _idleTimer; // null until the first flush that leaves the bit set
    private bool _closing;

    /// <summary>Allocations registered and not yet ended (for tests).</summary>
    public int ActiveAllocations
    {
        get { lock (_lock) return _activeAllocations; }
    }

    /// <summary>
    /// Registers an allocation into L2 table <paramref name="l1Index"/>; when it may leave entries ahead of data, waits
    /// until NEED_CHECK is durable and the table is in the recovery record.
    /// </summary>
    public async ValueTask BeginAllocationAsync(bool needsCheckBit, int l1Index, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            bool registered = false;
            lock (_lock)
            {
                if (_clearing != null)
                {
                    wait = _clearing;
                }
                else
                {
                    _activeAllocations++;
                    if (!needsCheckBit) return;
                    registered = true;
                    wait = _onDisk ? Task.CompletedTask : _setting ??= Task.Run(() => SetAsync(true, l1Index));
                }
            }
            if (registered)
            {
                try
                {
                    await wait.WaitAsync(ct).ConfigureAwait(false);
                    await record.EnsureAsync(l1Index).ConfigureAwait(false);
                    return;
                }
                catch
                {
                    EndAllocation();
                    throw;
                }
            }
            try { await wait.WaitAsync(ct).ConfigureAwait(false); } catch (OperationCanceledException) { throw; } catch { }
        }
    }

    /// <summary>Ends an allocation registered by <see cref="BeginAllocationAsync"/>.</summary>
    public void EndAllocation()
    {
        lock (_lock) _activeAllocations--;
    }

    /// <summary>
    /// After a flush: (re)arms the timer that clears NEED_CHECK once the image has been idle for the delay. Each flush
    /// pushes the clear back, so a busy image keeps the bit set.
    /// </summary>
    public void ScheduleClear()
    {
        lock (_lock)
        {
            if (keep || !_onDisk || _closing) return;
            _idleTimer ??= new Timer(static state => _ = ((NeedCheckTracker)state!).ClearWhenIdleAsync(), this, Timeout.Infinite, Timeout.Infinite);
            _idleTimer.Change(clearDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private async Task ClearWhenIdleAsync()
    {
        // The clear syncs before it writes the header, so what the bit protects is durable first. A failure leaves
        // the bit set, which is safe: the next open checks the image.
        try { await ClearIfIdleAsync(CancellationToken.None).ConfigureAwait(false); }
        catch (Exception) { }
    }

    /// <summary>At close: stops the idle timer and waits for a clear it started.</summary>
    public async Task StopAsync()
    {
        Timer? timer;
        lock (_lock)
        {
            _closing = true;
            timer = _idleTimer;
        }
        if (timer != null) await timer.DisposeAsync().ConfigureAwait(false);
        Task? clearing;
        lock (_lock) clearing = _clearing;
        if (clearing != null) try { await clearing.ConfigureAwait(false); } catch (Exception) { }
    }

    /// <summary>Clears NEED_CHECK if it is set and no allocation is in flight: flush, header, flush.</summary>
    public async Task ClearIfIdleAsync(CancellationToken ct)
    {
        Task task;
        lock (_lock)
        {
            if (keep || _activeAllocations > 0 || !_onDisk || _clearing != null || _setting != null) return;
            task = _clearing = Task.Run(() => SetAsync(false, 0));
        }
        await task.WaitAsync(ct).ConfigureAwait(false);
    }

    private async Task SetAsync(bool set, int firstIndex)
    {
        try
        {
            if (set)
            {
                // The record's head and first table go first: the bit that says the record is valid is set with
                // NEED_CHECK, in the header write that follows.
                bool recorded = await record.StartEpochAsync(cleanFileEnd(), firstIndex).ConfigureAwait(false);
                await header.SetNeedCheckAsync(true, recorded).ConfigureAwait(false);
            }
            else
            {
                await header.SetNeedCheckAsync(false).ConfigureAwait(false);
                record.Reset();
            }
            lock (_lock) _onDisk = set;
        }
        finally
        {
            lock (_lock)
            {
                if (set) _setting = null;
                else _clearing = null;
            }
        }
    }
}
