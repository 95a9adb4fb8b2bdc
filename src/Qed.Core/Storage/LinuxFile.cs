using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// The Linux calls .NET does not expose: fallocate (reserving, hole punching), SEEK_DATA/SEEK_HOLE, pwritev2 with
/// RWF_DSYNC, preadv2 with RWF_NOWAIT, fdatasync. Called through <see cref="NativeFile"/> only when
/// <see cref="HostIO.Linux"/>; each reports "cannot" so the caller takes the fallback.
/// </summary>
internal static partial class LinuxFile
{
    /// <summary>
    /// glibc by its soname: plain "libc" makes the runtime try libc.so first, which on Debian is a linker script, and
    /// those failed loads cost about 10 ms of every start.
    /// </summary>
    internal const string Libc = "libc.so.6";

    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int ENOSYS = 38;
    private const int EOPNOTSUPP = 95;

    [LibraryImport(Libc, EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport(Libc, EntryPoint = "fallocate", SetLastError = true)]
    private static partial int FAllocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport(Libc, EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FDataSync(SafeFileHandle fd);

    [LibraryImport(Libc, EntryPoint = "preadv2", SetLastError = true)]
    private static unsafe partial nint PReadV2(SafeFileHandle fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport(Libc, EntryPoint = "pwritev2", SetLastError = true)]
    private static unsafe partial nint PWriteV2(SafeFileHandle fd, IoVec* iov, int iovcnt, long offset, int flags);

    private const int RwfDsync = 0x02;
    private static volatile bool s_dsyncUnsupported;

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> as one synced write (pwritev2 with RWF_DSYNC: the
    /// kernel writes back and syncs that range alone, with the device cache flush). False when the platform or
    /// filesystem cannot, remembered, so the caller writes and flushes instead; a real I/O error throws.
    /// </summary>
    public static unsafe bool TryWriteDsync(SafeFileHandle handle, ReadOnlySpan<byte> data, long offset)
    {
        if (s_dsyncUnsupported) return false;
        fixed (byte* p = data)
        {
            int done = 0;
            while (done < data.Length)
            {
                var iov = new IoVec { Base = p + done, Length = (nuint)(data.Length - done) };
                nint n;
                try { n = PWriteV2(handle, &iov, 1, offset + done, RwfDsync); }
                catch (EntryPointNotFoundException) { s_dsyncUnsupported = true; return false; }
                catch (DllNotFoundException) { s_dsyncUnsupported = true; return false; }
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (done == 0 && errno is EOPNOTSUPP or ENOSYS or EINVAL) { s_dsyncUnsupported = true; return false; }
                    throw new IOException($"pwritev2 (RWF_DSYNC) failed at offset {offset + done}: {Marshal.GetPInvokeErrorMessage(errno)}");
                }
                done += (int)n;
            }
            return true;
        }
    }

    private const int EINVAL = 22;

    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    private const int RwfNoWait = 0x08;
    private const int EAGAIN = 11;

    private static volatile bool s_noWaitUnsupported;

    /// <summary>
    /// Reads what the page cache already holds without blocking (preadv2 with RWF_NOWAIT): the bytes read, 0 at end
    /// of file, or -1 when the data is not cached or the platform or filesystem cannot say (then read normally).
    /// A cached read done here costs a copy; handing it to the thread pool costs two thread wake-ups, which on a small
    /// machine are most of a 4 KiB read's time.
    /// </summary>
    public static unsafe int TryReadCached(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        if (s_noWaitUnsupported) return -1;
        fixed (byte* p = buffer)
        {
            var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
            nint n;
            try { n = PReadV2(handle, &iov, 1, offset, RwfNoWait); }
            catch (EntryPointNotFoundException) { s_noWaitUnsupported = true; return -1; }
            catch (DllNotFoundException) { s_noWaitUnsupported = true; return -1; }
            if (n >= 0) return (int)n;
            // EAGAIN: not cached. Anything else (EOPNOTSUPP, EINVAL, ENOSYS on old kernels or other filesystems):
            // stop trying; a real I/O error is reported by the normal read that follows.
            if (Marshal.GetLastPInvokeError() != EAGAIN) s_noWaitUnsupported = true;
            return -1;
        }
    }

    /// <summary>Punches a hole; false when the platform or filesystem cannot, so the caller writes zeroes instead.</summary>
    public static bool TryPunchHole(SafeFileHandle handle, long offset, long length)
    {
        try { return FAllocate(handle, FallocPunchHole | FallocKeepSize, offset, length) == 0; }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
    }

    private static volatile bool s_allocateUnsupported;

    /// <summary>
    /// Reserves [offset, offset+length) (fallocate, mode 0: the file grows if the range ends past it); false when the
    /// platform or filesystem cannot (then the caller sets the length instead), remembered so the call is not retried.
    /// </summary>
    public static bool TryAllocate(SafeFileHandle handle, long offset, long length)
    {
        if (s_allocateUnsupported) return false;
        try
        {
            if (FAllocate(handle, 0, offset, length) == 0) return true;
            // Out of space (or another passing failure): the plain length change still works, and the writes that
            // follow report the shortage. Only a filesystem that cannot fallocate at all stops the attempts.
            int errno = Marshal.GetLastPInvokeError();
            if (errno is not (EOPNOTSUPP or ENOSYS)) return false;
        }
        catch (EntryPointNotFoundException) { }
        catch (DllNotFoundException) { }
        s_allocateUnsupported = true;
        return false;
    }

    /// <summary>fdatasync (it skips the inode timestamps that fsync also writes); false where it is missing (then fsync).</summary>
    public static bool TryDataSync(SafeFileHandle handle)
    {
        try
        {
            if (FDataSync(handle) == 0) return true;
            throw new IOException($"fdatasync failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
    }

    /// <summary>Whether reserving has not been refused by the filesystem yet (it is then not tried again).</summary>
    public static bool AllocateWorks => !s_allocateUnsupported;

    /// <summary>
    /// Finds whether <paramref name="offset"/> is in data or a hole and where that run ends (capped at
    /// <paramref name="end"/>). Returns null when the platform cannot tell.
    /// </summary>
    public static unsafe (bool IsData, long RunEnd)? FindRun(SafeFileHandle handle, long offset, long end) =>
        SeekRuns.FindRun(handle, offset, end, &LSeek, SeekData, SeekHole);
}
