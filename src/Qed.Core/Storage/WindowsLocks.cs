using System.Diagnostics;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// QEMU's lock bytes as Windows byte-range locks (LockFileEx), which, like OFD locks, belong to the handle: two opens
/// in one process exclude each other as two processes do. QEMU on Windows takes no image locks, so these exclude
/// qed's own opens (and other programs that lock these bytes) only, not QEMU's.
/// </summary>
/// <remarks>
/// Two differences from the POSIX protocol shape the scheme. Windows locks are mandatory (a shared lock stops writes
/// to its bytes, the locker's own included), so the bytes sit at <see cref="Base"/> + QEMU's offsets, far past the
/// end of any file, where no read or write goes. And there is no F_GETLK: a test is an exclusive lock tried and let
/// go, which would also hit this open's own shared locks. So an opener tests before it takes, and does both while
/// holding a guard byte exclusively, which makes test-and-take one step to every other opener (they wait for the
/// guard, a few lock calls long, and give up after <see cref="GuardWait"/>).
/// </remarks>
internal static class WindowsLocks
{
    /// <summary>Where QEMU's byte 0 is placed: 2^62, beyond the largest file NTFS or ReFS can hold.</summary>
    private const long Base = 1L << 62;
    private const long Guard = Base - 1;
    private static readonly TimeSpan GuardWait = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Tests each of <paramref name="tests"/> for another open's lock (throwing the first one's message), then takes a
    /// shared lock on each byte of <paramref name="take"/>, on a second handle that the returned holder closes (which
    /// drops the locks). Null where the filesystem has no byte-range locks.
    /// </summary>
    /// <exception cref="ImageLockedException">A test found a conflict, a byte could not be taken, or the guard stayed held.</exception>
    public static IDisposable? Acquire(SafeFileHandle handle, string path, IReadOnlyList<int> take, IReadOnlyList<(int Offset, string Reason)> tests)
    {
        var locks = WindowsFile.ReOpen(handle, writable: false, path);
        try
        {
            var waited = Stopwatch.StartNew();
            while (!WindowsFile.TryLock(locks, Guard, exclusive: true))
            {
                if (waited.Elapsed > GuardWait) throw new ImageLockedException(path, $"Failed to lock: another opener held the lock guard for {GuardWait.TotalSeconds} s");
                Thread.Sleep(1);
            }
            try
            {
                foreach (var (offset, reason) in tests)
                {
                    if (!WindowsFile.TryLock(locks, Base + offset, exclusive: true)) throw new ImageLockedException(path, reason);
                    WindowsFile.Unlock(locks, Base + offset);
                }
                foreach (int offset in take)
                    if (!WindowsFile.TryLock(locks, Base + offset, exclusive: false))
                        throw new ImageLockedException(path, $"Failed to lock byte {offset}");
            }
            finally
            {
                WindowsFile.Unlock(locks, Guard);
            }
            return locks;
        }
        catch (NotSupportedException)
        {
            locks.Dispose();
            return null; // a filesystem without byte-range locks: QEMU's rule, open unlocked
        }
        catch
        {
            locks.Dispose();
            throw;
        }
    }
}
