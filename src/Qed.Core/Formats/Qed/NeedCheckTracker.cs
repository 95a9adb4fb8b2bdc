using Qed.Format;

namespace Qed;

// The NEED_CHECK bit's life cycle. Without a backing file, L2 entries may reach the disk before the data they point
// at (no flush orders them), so NEED_CHECK is made durable before the first such allocation and cleared only after a
// flush with no allocation in flight; an image opened with it set is checked and repaired first. The clear waits for
// the image to go idle (as QEMU does): clearing at every flush, only to set the bit again at the next allocation,
// cost a write-flush loop three extra syncs per flush.
public sealed partial class QedImage
{
    private readonly SemaphoreSlim _headerWriteLock = new(1, 1);
    private int _activeAllocations;   // under _metaLock
    private bool _needCheckOnDisk;    // under _metaLock
    private Task? _settingNeedCheck;  // under _metaLock
    private Task? _clearingNeedCheck; // under _metaLock
    private Timer? _idleClearTimer;   // under _metaLock; null until the first flush that leaves the bit set

    /// <summary>How long after the last flush NEED_CHECK is cleared, if no allocation came meanwhile (tests shorten it).</summary>
    internal TimeSpan NeedCheckClearDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// After a flush: (re)arms the timer that clears NEED_CHECK once the image has been idle for
    /// <see cref="NeedCheckClearDelay"/>. Each flush pushes the clear back, so a busy image keeps the bit set.
    /// </summary>
    private void ScheduleNeedCheckClear()
    {
        lock (_metaLock)
        {
            if (_keepNeedCheck || !_needCheckOnDisk || _closing) return;
            _idleClearTimer ??= new Timer(static state => _ = ((QedImage)state!).ClearWhenIdleAsync(), this, Timeout.Infinite, Timeout.Infinite);
            _idleClearTimer.Change(NeedCheckClearDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private async Task ClearWhenIdleAsync()
    {
        // The clear syncs before it writes the header, so what the bit protects is durable first. A failure leaves
        // the bit set, which is safe: the next open checks the image.
        try { await ClearNeedCheckIfIdleAsync(CancellationToken.None).ConfigureAwait(false); }
        catch (Exception) { }
    }

    /// <summary>At close: stops the idle timer and waits for a clear it started.</summary>
    private async Task StopIdleClearAsync()
    {
        Timer? timer;
        lock (_metaLock)
        {
            _closing = true;
            timer = _idleClearTimer;
        }
        if (timer != null) await timer.DisposeAsync().ConfigureAwait(false);
        Task? clearing;
        lock (_metaLock) clearing = _clearingNeedCheck;
        if (clearing != null) try { await clearing.ConfigureAwait(false); } catch (Exception) { }
    }

    private bool _closing; // under _metaLock

    // Without a backing file, an L2 entry may reach the disk before the data it points at (no flush between them), so
    // NEED_CHECK is made durable before the first such allocation and cleared only after a flush with none in flight.

    /// <summary>Registers an allocation; when it may leave entries ahead of data, waits until NEED_CHECK is durable.</summary>
    private async ValueTask BeginAllocationAsync(bool needsCheckBit, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            bool owner = false;
            lock (_metaLock)
            {
                if (_clearingNeedCheck != null)
                {
                    wait = _clearingNeedCheck;
                }
                else
                {
                    _activeAllocations++;
                    if (!needsCheckBit || _needCheckOnDisk) return;
                    wait = _settingNeedCheck ??= Task.Run(() => SetNeedCheckAsync(true));
                    owner = true;
                }
            }
            if (owner)
            {
                try
                {
                    await wait.WaitAsync(ct).ConfigureAwait(false);
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

    private void EndAllocation()
    {
        lock (_metaLock) _activeAllocations--;
    }

    /// <summary>Clears NEED_CHECK if it is set and no allocation is in flight: flush, header, flush.</summary>
    private async Task ClearNeedCheckIfIdleAsync(CancellationToken ct)
    {
        Task task;
        lock (_metaLock)
        {
            if (_keepNeedCheck || _activeAllocations > 0 || !_needCheckOnDisk || _clearingNeedCheck != null || _settingNeedCheck != null) return;
            task = _clearingNeedCheck = Task.Run(() => SetNeedCheckAsync(false));
        }
        await task.WaitAsync(ct).ConfigureAwait(false);
    }

    private async Task SetNeedCheckAsync(bool set)
    {
        try
        {
            await _headerWriteLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (!set) await _file.FlushAsync().ConfigureAwait(false); // everything the bit protects is durable first
                var header = _header with { Features = set ? _header.Features | QedFeatures.NeedCheck : _header.Features & ~QedFeatures.NeedCheck };
                await WriteHeaderAsync(_file, header, CancellationToken.None).ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                _header = header;
            }
            finally
            {
                _headerWriteLock.Release();
            }
            lock (_metaLock) _needCheckOnDisk = set;
        }
        finally
        {
            lock (_metaLock)
            {
                if (set) _settingNeedCheck = null;
                else _clearingNeedCheck = null;
            }
        }
    }
}
