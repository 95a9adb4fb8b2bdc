using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// QEMU's lock bytes as POSIX record locks (fcntl F_SETLK / F_GETLK), for hosts without OFD locks: macOS, and Linux
/// under QED_PORTABLE_IO. QEMU itself falls back to these where it lacks OFD locks, on the same bytes, so between
/// processes they exclude as QEMU's do (and on Linux they also conflict with QEMU's OFD locks).
/// </summary>
/// <remarks>
/// Record locks belong to the process, not the open file: the kernel merges a process's locks on a byte into one,
/// F_GETLK never reports the caller's own, and closing any descriptor of the file drops all of them. So the process's
/// own opens are kept apart here, in a table by file identity: how many opens hold each byte (the kernel's lock is
/// dropped only when the last lets go), conflicts among them found in the table, and a handle of a file that an open
/// still holds locks on is kept open (parked) until the last holder goes, instead of being closed under it
/// (<see cref="Close"/>). A descriptor the process opens on the file other than through FileStorage still drops the
/// locks when closed: that, and a file whose identity cannot be read, are the limits of this fallback.
/// </remarks>
internal static unsafe partial class PosixLocks
{
    private sealed class Entry
    {
        public readonly Dictionary<long, int> Holders = new(); // byte -> opens in this process holding it
        public int Opens;                                       // opens holding any lock here
        public readonly List<SafeFileHandle> Parked = new();
    }

    private static readonly Lock s_lock = new();
    private static readonly Dictionary<(ulong Device, ulong Inode), Entry> s_files = new();

    /// <summary>
    /// Takes a shared lock on each byte of <paramref name="take"/>, then tests each of <paramref name="tests"/> for a
    /// lock held by another open (in another process, or another open in this one), throwing the first one's message.
    /// Returns the holder to dispose before the handle is closed, or null where the file cannot take record locks.
    /// </summary>
    /// <exception cref="ImageLockedException">A byte could not be taken, or a test found a conflict; nothing is left taken.</exception>
    public static IDisposable? Acquire(SafeFileHandle handle, string path, NativeLock.FileId? id,
        IReadOnlyList<int> take, IReadOnlyList<(int Offset, string Reason)> tests)
    {
        if (id is not { } file) return null; // no identity: the table could not tell this process's opens apart
        lock (s_lock)
        {
            if (Call(handle, path, GetLk, WrLck, 0, 0) == NativeLock.Result.Unsupported) return null;
            var key = (file.Device, file.Inode);
            if (!s_files.TryGetValue(key, out var entry)) s_files[key] = entry = new Entry();
            var mine = new List<int>();
            try
            {
                foreach (int offset in take)
                {
                    if (Call(handle, path, SetLk, RdLck, offset, 1) != NativeLock.Result.Ok)
                        throw new ImageLockedException(path, $"Failed to lock byte {offset}");
                    entry.Holders[offset] = entry.Holders.GetValueOrDefault(offset) + 1;
                    mine.Add(offset);
                }
                foreach (var (offset, reason) in tests)
                {
                    int here = entry.Holders.GetValueOrDefault(offset) - (mine.Contains(offset) ? 1 : 0);
                    if (here > 0 || Call(handle, path, GetLk, WrLck, offset, 1) == NativeLock.Result.Conflict)
                        throw new ImageLockedException(path, reason);
                }
                entry.Opens++;
                return new Holder(key, entry, handle, path, mine);
            }
            catch
            {
                Release(entry, handle, path, mine);
                if (entry.Opens == 0) Forget(key, entry);
                throw;
            }
        }
    }

    /// <summary>
    /// Closes handles of the file <paramref name="id"/> names, or parks them while another open in this process
    /// holds locks on it (closing would drop those). Every FileStorage handle is closed through here when record
    /// locks are in use.
    /// </summary>
    public static void Close(NativeLock.FileId? id, params ReadOnlySpan<SafeFileHandle?> handles)
    {
        lock (s_lock)
        {
            bool park = id is { } file && s_files.TryGetValue((file.Device, file.Inode), out var entry) && entry.Opens > 0;
            foreach (var handle in handles)
            {
                if (handle is null) continue;
                if (park) s_files[(id!.Value.Device, id.Value.Inode)].Parked.Add(handle);
                else handle.Dispose();
            }
        }
    }

    private static void Release(Entry entry, SafeFileHandle handle, string path, List<int> mine)
    {
        foreach (int offset in mine)
        {
            int left = entry.Holders[offset] - 1;
            if (left > 0)
            {
                entry.Holders[offset] = left;
                continue;
            }
            entry.Holders.Remove(offset);
            Call(handle, path, SetLk, UnLck, offset, 1);
        }
        mine.Clear();
    }

    private static void Forget((ulong, ulong) key, Entry entry)
    {
        s_files.Remove(key);
        foreach (var parked in entry.Parked) parked.Dispose(); // no locks left to lose
    }

    private sealed class Holder((ulong, ulong) key, Entry entry, SafeFileHandle handle, string path, List<int> mine) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            lock (s_lock)
            {
                if (_disposed) return;
                _disposed = true;
                Release(entry, handle, path, mine);
                if (--entry.Opens == 0) Forget(key, entry);
            }
        }
    }

    // ---- fcntl record locks, in each host's numbers and struct flock layout.

    private static readonly bool Mac = HostIO.MacOS;
    private static int GetLk => Mac ? 7 : 5;
    private static int SetLk => Mac ? 8 : 6;
    private static short RdLck => Mac ? (short)1 : (short)0;
    private static short WrLck => Mac ? (short)3 : (short)1;
    private static short UnLck => 2;

    /// <summary>Linux's struct flock on 64-bit targets.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct LinuxFlock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    /// <summary>macOS's struct flock.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MacFlock
    {
        public long Start;
        public long Length;
        public int Pid;
        public short Type;
        public short Whence;
    }

    [LibraryImport(LinuxFile.Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int LinuxFcntl(SafeFileHandle fd, int cmd, void* flock);

    private static NativeLock.Result Call(SafeFileHandle handle, string path, int cmd, short type, long offset, long length)
    {
        int rc;
        short found;
        try
        {
            if (Mac)
            {
                var flock = new MacFlock { Type = type, Start = offset, Length = length };
                rc = MacFile.Fcntl(handle, cmd, (nint)(&flock));
                found = flock.Type;
            }
            else
            {
                var flock = new LinuxFlock { Type = type, Start = offset, Length = length };
                rc = LinuxFcntl(handle, cmd, &flock);
                found = flock.Type;
            }
        }
        catch (EntryPointNotFoundException) { return NativeLock.Result.Unsupported; }
        catch (DllNotFoundException) { return NativeLock.Result.Unsupported; }
        if (rc == 0) return cmd == GetLk && found != UnLck ? NativeLock.Result.Conflict : NativeLock.Result.Ok;
        int errno = Marshal.GetLastPInvokeError();
        // EAGAIN (Linux 11, macOS 35), EACCES: held; EINVAL, ENOLCK (37, 77), EOPNOTSUPP/ENOTSUP (95, 45), ENOSYS (38, 78): no locks here.
        if (errno is 13 || errno == (Mac ? 35 : 11)) return NativeLock.Result.Conflict;
        if (errno is 22 || errno == (Mac ? 77 : 37) || errno == (Mac ? 45 : 95) || errno == (Mac ? 78 : 38)) return NativeLock.Result.Unsupported;
        throw new IOException($"Could not lock '{path}': {Marshal.GetPInvokeErrorMessage(errno)}");
    }
}
