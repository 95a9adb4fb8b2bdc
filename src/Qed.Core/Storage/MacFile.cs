using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// The macOS calls .NET does not expose: F_PUNCHHOLE (discard), F_NOCACHE (cache=none), F_FULLFSYNC (flush: fsync on
/// macOS leaves the data in the drive's cache), SEEK_DATA/SEEK_HOLE (APFS), and stat for file type and identity.
/// Called through <see cref="NativeFile"/> and <see cref="NativeLock"/> only when <see cref="HostIO.MacOS"/>.
/// </summary>
/// <remarks>
/// fcntl is variadic, and on Apple's Arm64 ABI a variadic argument goes on the stack, not in the register a plain
/// declaration uses. The Arm64 declarations therefore pass six unused register arguments first, so that the real
/// one is the ninth argument, the first stack slot, where fcntl reads it. On x64 variadic and plain calls agree.
/// </remarks>
internal static partial class MacFile
{
    /// <summary>libSystem, which holds the C library on every macOS (dlopen finds it in the shared cache).</summary>
    internal const string LibSystem = "/usr/lib/libSystem.B.dylib";

    private const int FNoCache = 48, FFullFsync = 51, FPunchHole = 99;
    private const int SeekHole = 3, SeekData = 4; // the reverse of Linux's numbers
    internal const int EINVAL = 22, ENOTTY = 25, ENOTSUP = 45, ENOENT = 2, ENOTDIR = 20, ENOSYS = 78;

    /// <summary>APFS's block: holes are punched at this alignment, the bytes around them written as zeroes.</summary>
    private const long PunchAlignment = 4096;

    private static readonly bool Arm64 = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;

    [LibraryImport(LibSystem, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlX64(SafeFileHandle fd, int cmd, nint arg);

    [LibraryImport(LibSystem, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlArm64(SafeFileHandle fd, int cmd, nint r2, nint r3, nint r4, nint r5, nint r6, nint r7, nint arg);

    [LibraryImport(LibSystem, EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(SafeFileHandle fd, long offset, int whence);

    /// <summary>fcntl with one argument (an integer or a pointer), as the platform's ABI passes it.</summary>
    internal static int Fcntl(SafeFileHandle fd, int cmd, nint arg) =>
        Arm64 ? FcntlArm64(fd, cmd, 0, 0, 0, 0, 0, 0, arg) : FcntlX64(fd, cmd, arg);

    [StructLayout(LayoutKind.Sequential)]
    private struct PunchHoleArgs
    {
        public uint Flags;
        public uint Reserved;
        public long Offset;
        public long Length;
    }

    /// <summary>
    /// Makes [offset, offset+length) read as zeroes, as a hole where it covers whole blocks (F_PUNCHHOLE) and as
    /// written zeroes around it; never past the end of the file (bytes there already read as zeroes). False when the
    /// filesystem cannot punch (HFS+, exFAT, network): the caller writes zeroes over the range instead.
    /// </summary>
    public static unsafe bool TryPunchHole(SafeFileHandle handle, long offset, long length)
    {
        long end = Math.Min(offset + length, RandomAccess.GetLength(handle));
        long first = (offset + PunchAlignment - 1) / PunchAlignment * PunchAlignment;
        long last = end / PunchAlignment * PunchAlignment;
        if (first >= last) return false; // nothing whole to punch: zeroes are the whole answer
        var args = new PunchHoleArgs { Offset = first, Length = last - first };
        try
        {
            if (Fcntl(handle, FPunchHole, (nint)(&args)) != 0) return false;
        }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
        WriteZeroes(handle, offset, first - offset);
        WriteZeroes(handle, last, end - last);
        return true;
    }

    private static void WriteZeroes(SafeFileHandle handle, long offset, long length)
    {
        if (length > 0) RandomAccess.Write(handle, Zeroes.Block.Span[..(int)length], offset);
    }

    /// <summary>Turns the data cache off for this open file (F_NOCACHE); false where refused.</summary>
    public static bool TryDisableCache(SafeFileHandle handle)
    {
        try { return Fcntl(handle, FNoCache, 1) == 0; }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
    }

    /// <summary>
    /// Asks the drive to write its cache to the medium (F_FULLFSYNC): what durability needs on macOS, where fsync only
    /// hands the data to the drive. A filesystem that refuses it (some network and FUSE ones) gets fsync, the most it
    /// offers; an I/O error throws.
    /// </summary>
    public static void FullSync(SafeFileHandle handle)
    {
        try
        {
            if (Fcntl(handle, FFullFsync, 0) == 0) return;
            int errno = Marshal.GetLastPInvokeError();
            if (errno is not (ENOTSUP or ENOTTY or EINVAL))
                throw new IOException($"F_FULLFSYNC failed: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        catch (EntryPointNotFoundException) { }
        catch (DllNotFoundException) { }
        RandomAccess.FlushToDisk(handle);
    }

    /// <summary>As <see cref="LinuxFile.FindRun"/>, with macOS's SEEK_DATA and SEEK_HOLE (APFS answers; HFS+ reports all data).</summary>
    public static unsafe (bool IsData, long RunEnd)? FindRun(SafeFileHandle handle, long offset, long end) =>
        SeekRuns.FindRun(handle, offset, end, &LSeek, SeekData, SeekHole);

    // struct stat with 64-bit inodes (arm64's only layout; x64's "$INODE64" symbols): st_dev int32 at 0, st_mode
    // uint16 at 4, st_ino uint64 at 8; 144 bytes in all.
    private const int StatSize = 144, ModeOffset = 4, InoOffset = 8;

    [LibraryImport(LibSystem, EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatArm64(string path, byte* buffer);

    [LibraryImport(LibSystem, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LStatArm64(string path, byte* buffer);

    [LibraryImport(LibSystem, EntryPoint = "fstat", SetLastError = true)]
    private static unsafe partial int FStatArm64(SafeFileHandle fd, byte* buffer);

    [LibraryImport(LibSystem, EntryPoint = "stat$INODE64", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatX64(string path, byte* buffer);

    [LibraryImport(LibSystem, EntryPoint = "lstat$INODE64", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LStatX64(string path, byte* buffer);

    [LibraryImport(LibSystem, EntryPoint = "fstat$INODE64", SetLastError = true)]
    private static unsafe partial int FStatX64(SafeFileHandle fd, byte* buffer);

    /// <summary>stat or lstat of a path; null when nothing is there.</summary>
    public static unsafe NativeLock.FileId? Stat(string path, bool noFollow)
    {
        byte* buffer = stackalloc byte[StatSize];
        int rc;
        try
        {
            rc = Arm64 ? (noFollow ? LStatArm64(path, buffer) : StatArm64(path, buffer))
                : (noFollow ? LStatX64(path, buffer) : StatX64(path, buffer));
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return NativeLock.Missing(path, errno, errno is ENOENT or ENOTDIR or ENOSYS);
        }
        return Decode(buffer);
    }

    /// <summary>fstat of an open file; null where it fails.</summary>
    public static unsafe NativeLock.FileId? Stat(SafeFileHandle handle)
    {
        byte* buffer = stackalloc byte[StatSize];
        try
        {
            if ((Arm64 ? FStatArm64(handle, buffer) : FStatX64(handle, buffer)) != 0) return null;
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        return Decode(buffer);
    }

    private static unsafe NativeLock.FileId Decode(byte* b) =>
        new(*(ushort*)(b + ModeOffset) & 0xF000, *(uint*)b, *(ulong*)(b + InoOffset));
}
