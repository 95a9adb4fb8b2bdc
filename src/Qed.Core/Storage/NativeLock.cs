using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// Open-file-description byte-range locks (fcntl F_OFD_SETLK / F_OFD_GETLK), the Linux locks QEMU takes, and file
/// type and identity (statx on Linux, stat on macOS). OFD locks belong to the open file, not the process, so two
/// opens in one process exclude each other as two processes do; they are dropped when the file is closed. Where they
/// are not used (<see cref="HostIO.Linux"/> false) <see cref="ImageLock"/> takes POSIX or Windows locks instead.
/// </summary>
internal static partial class NativeLock
{
    private const int FOfdGetLk = 36;
    private const int FOfdSetLk = 37;
    private const short FRdLck = 0;
    private const short FWrLck = 1;
    private const short FUnLck = 2;
    private const int EINVAL = 22;
    private const int ENOSYS = 38;
    private const int ENOLCK = 37;
    private const int EOPNOTSUPP = 95;
    private const int EAGAIN = 11;
    private const int EACCES = 13;

    /// <summary>struct flock as Linux lays it out on 64-bit targets (short, short, off_t, off_t, pid_t).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [LibraryImport(LinuxFile.Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static unsafe partial int Fcntl(SafeFileHandle fd, int cmd, Flock* flock);

    /// <summary>What a lock call found.</summary>
    public enum Result
    {
        /// <summary>Done (set), or no conflicting lock (test).</summary>
        Ok,
        /// <summary>Another open file holds a lock that conflicts.</summary>
        Conflict,
        /// <summary>The platform or filesystem has no OFD locks.</summary>
        Unsupported,
    }

    // OFD locks are a Linux-only call (off under QED_PORTABLE_IO); statx is Linux's file identity call and stays on.
    private static readonly bool IsSupportedPlatform = HostIO.Linux;
    private static readonly bool HasStatx = OperatingSystem.IsLinux() && Environment.Is64BitProcess;

    /// <summary>Takes (or, with <paramref name="unlock"/>, drops) a shared lock on one byte.</summary>
    public static Result SetShared(SafeFileHandle handle, string name, long offset, bool unlock = false) =>
        Call(handle, name, FOfdSetLk, unlock ? FUnLck : FRdLck, offset, 1);

    /// <summary>Whether another open file holds any lock on the byte (tests as for an exclusive lock).</summary>
    public static Result TestOthers(SafeFileHandle handle, string name, long offset) => Call(handle, name, FOfdGetLk, FWrLck, offset, 1);

    /// <summary>Whether the file can take OFD locks at all (a test over the whole file, as an opener's first step); false off Linux.</summary>
    public static bool IsSupported(SafeFileHandle handle, string name) => Call(handle, name, FOfdGetLk, FWrLck, 0, 0) != Result.Unsupported;

    private static unsafe Result Call(SafeFileHandle handle, string name, int cmd, short type, long offset, long length)
    {
        if (!IsSupportedPlatform) return Result.Unsupported;
        var flock = new Flock { Type = type, Whence = 0 /* SEEK_SET */, Start = offset, Length = length, Pid = 0 };
        int rc;
        try { rc = Fcntl(handle, cmd, &flock); }
        catch (EntryPointNotFoundException) { return Result.Unsupported; }
        catch (DllNotFoundException) { return Result.Unsupported; }
        if (rc == 0)
            return cmd == FOfdGetLk && flock.Type != FUnLck ? Result.Conflict : Result.Ok;
        int errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            EAGAIN or EACCES => Result.Conflict,
            EINVAL or ENOSYS or ENOLCK or EOPNOTSUPP => Result.Unsupported, // old kernel, or a filesystem without locks
            _ => throw new IOException($"Could not lock '{name}': {Marshal.GetPInvokeErrorMessage(errno)}"),
        };
    }

    // statx: its struct has one layout on every architecture (unlike struct stat), so one declaration serves all.
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1, StatxIno = 0x100;
    private const int StatxSize = 256;
    private const int ModeOffset = 28, InoOffset = 32, DevMajorOffset = 136, DevMinorOffset = 140;
    private const int ENOENT = 2, ENOTDIR = 20;

    [LibraryImport(LinuxFile.Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatxPath(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport(LinuxFile.Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatxHandle(SafeFileHandle fd, string path, int flags, uint mask, byte* buffer);

    /// <summary>A file's type and identity: st_mode's type bits, and (device, inode).</summary>
    public readonly record struct FileId(int Type, ulong Device, ulong Inode)
    {
        public const int Fifo = 0x1000, CharDevice = 0x2000, Directory = 0x4000, BlockDevice = 0x6000, Regular = 0x8000,
            Symlink = 0xA000, Socket = 0xC000;
    }

    /// <summary>
    /// The type and identity of what <paramref name="path"/> names (through symlinks unless <paramref name="noFollow"/>);
    /// null when nothing is there, or the platform cannot tell.
    /// </summary>
    public static unsafe FileId? Stat(string path, bool noFollow = false)
    {
        if (HostIO.MacOS) return MacFile.Stat(path, noFollow);
        if (!HasStatx) return null;
        byte* buffer = stackalloc byte[StatxSize];
        int rc;
        try { rc = StatxPath(AtFdCwd, path, noFollow ? AtSymlinkNoFollow : 0, StatxType | StatxIno, buffer); }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return Missing(path, errno, errno is ENOENT or ENOTDIR or ENOSYS);
        }
        return Decode(buffer);
    }

    /// <summary>
    /// A failed stat of <paramref name="path"/>: null when <paramref name="missing"/> (nothing there, or no such call;
    /// each host judges by its own errno numbers), else the error, naming the path.
    /// </summary>
    internal static FileId? Missing(string path, int errno, bool missing) =>
        missing ? null : throw new IOException($"Could not stat '{path}': {Marshal.GetPInvokeErrorMessage(errno)}");

    /// <summary>The type and identity of an open file (fstat); null where the platform cannot tell.</summary>
    public static unsafe FileId? Stat(SafeFileHandle handle)
    {
        if (HostIO.MacOS) return MacFile.Stat(handle);
        if (!HasStatx) return null;
        byte* buffer = stackalloc byte[StatxSize];
        try
        {
            if (StatxHandle(handle, "", AtEmptyPath, StatxType | StatxIno, buffer) != 0) return null;
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        return Decode(buffer);
    }

    private static unsafe FileId Decode(byte* b)
    {
        int mode = *(ushort*)(b + ModeOffset);
        ulong inode = *(ulong*)(b + InoOffset);
        ulong device = ((ulong)*(uint*)(b + DevMajorOffset) << 32) | *(uint*)(b + DevMinorOffset);
        return new FileId(mode & 0xF000, device, inode);
    }
}
