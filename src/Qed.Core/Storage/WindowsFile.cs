using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// The Windows calls .NET does not expose: sparse files (FSCTL_SET_SPARSE), discard (FSCTL_SET_ZERO_DATA, which on a
/// sparse file frees the range), the allocation map (FSCTL_QUERY_ALLOCATED_RANGES) and byte-range locks (LockFileEx).
/// Called through <see cref="NativeFile"/> and <see cref="WindowsLocks"/> only when <see cref="HostIO.Windows"/>.
/// </summary>
/// <remarks>
/// The storage's own handle is overlapped (FileOptions.Asynchronous), and a control or lock call on it would need an
/// OVERLAPPED whose completion the thread pool's port would also receive. These calls therefore go to a second,
/// synchronous handle on the same file (<see cref="ReOpen"/>), which the storage keeps as long as itself.
/// </remarks>
internal static unsafe partial class WindowsFile
{
    private const string Kernel32 = "kernel32.dll";
    private const uint GenericRead = 0x80000000, GenericWrite = 0x40000000;
    private const uint ShareAll = 0x1 | 0x2 | 0x4; // read, write, delete: the other openers' access is the locks' business
    private const uint FsctlSetSparse = 0x000900C4, FsctlSetZeroData = 0x000980C8, FsctlQueryAllocatedRanges = 0x000940CF;
    private const int ErrorMoreData = 234;
    internal const int ErrorLockViolation = 33;

    [LibraryImport(Kernel32, SetLastError = true)]
    private static partial SafeFileHandle ReOpenFile(SafeFileHandle original, uint access, uint share, uint flags);

    [LibraryImport(Kernel32, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool DeviceIoControl(SafeFileHandle handle, uint code, void* input, uint inputSize,
        void* output, uint outputSize, out uint returned, Overlapped* overlapped);

    [LibraryImport(Kernel32, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool LockFileEx(SafeFileHandle handle, uint flags, uint reserved, uint lengthLow, uint lengthHigh, Overlapped* overlapped);

    [LibraryImport(Kernel32, SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool UnlockFileEx(SafeFileHandle handle, uint reserved, uint lengthLow, uint lengthHigh, Overlapped* overlapped);

    /// <summary>A synchronous handle on the file <paramref name="handle"/> is open on (ReOpenFile: no second look-up by name).</summary>
    /// <exception cref="IOException">Windows refused.</exception>
    public static SafeFileHandle ReOpen(SafeFileHandle handle, bool writable, string path)
    {
        var reopened = ReOpenFile(handle, GenericRead | (writable ? GenericWrite : 0), ShareAll, 0);
        if (!reopened.IsInvalid) return reopened;
        int error = Marshal.GetLastPInvokeError();
        reopened.Dispose();
        throw new IOException($"Could not reopen '{path}': {Marshal.GetPInvokeErrorMessage(error)}");
    }

    /// <summary>Marks the file sparse, so growth and discards leave holes; false where the filesystem cannot (FAT, some network).</summary>
    public static bool TryMarkSparse(SafeFileHandle control)
    {
        byte set = 1; // FILE_SET_SPARSE_BUFFER.SetSparse
        return DeviceIoControl(control, FsctlSetSparse, &set, 1, null, 0, out _, null);
    }

    /// <summary>OVERLAPPED as a synchronous lock call reads it: the offset (low, high) after two pointer-sized fields, then an event.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Overlapped
    {
        public nint Internal;
        public nint InternalHigh;
        public long Offset;
        public nint Event;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Range
    {
        public long Offset; // FILE_ZERO_DATA_INFORMATION: FileOffset, BeyondFinalZero; FILE_ALLOCATED_RANGE_BUFFER: FileOffset, Length
        public long Second;
    }

    /// <summary>
    /// Zeroes [offset, offset+length) (FSCTL_SET_ZERO_DATA): freed on a sparse file, zeroes written on another, the
    /// length unchanged. False where the filesystem refuses: the caller writes zeroes.
    /// </summary>
    public static bool TryZeroData(SafeFileHandle control, long offset, long length)
    {
        var range = new Range { Offset = offset, Second = offset + length };
        return DeviceIoControl(control, FsctlSetZeroData, &range, (uint)sizeof(Range), null, 0, out _, null);
    }

    /// <summary>
    /// Whether <paramref name="offset"/> is in allocated data or a hole and where that run ends (capped at
    /// <paramref name="end"/>), from the first allocated range at or after it; null where the filesystem cannot say.
    /// </summary>
    public static (bool IsData, long RunEnd)? FindRun(SafeFileHandle control, long offset, long end)
    {
        if (offset >= end) return (false, end);
        var query = new Range { Offset = offset, Second = end - offset };
        Range first;
        if (!DeviceIoControl(control, FsctlQueryAllocatedRanges, &query, (uint)sizeof(Range), &first, (uint)sizeof(Range), out uint returned, null)
            && Marshal.GetLastPInvokeError() != ErrorMoreData) // more ranges follow: the first is all this answer needs
            return null;
        if (returned < sizeof(Range)) return (false, end); // nothing allocated in the range
        if (first.Offset > offset) return (false, Math.Min(first.Offset, end));
        return (true, Math.Min(first.Offset + first.Second, end));
    }

    /// <summary>
    /// Tries to lock one byte (LockFileEx, failing at once rather than waiting): true when taken, false when another
    /// handle's lock conflicts. Other failures (a filesystem without locks) throw <see cref="NotSupportedException"/>.
    /// </summary>
    public static bool TryLock(SafeFileHandle control, long offset, bool exclusive)
    {
        var overlapped = new Overlapped { Offset = offset };
        const uint failImmediately = 0x1, exclusiveLock = 0x2;
        if (LockFileEx(control, failImmediately | (exclusive ? exclusiveLock : 0), 0, 1, 0, &overlapped)) return true;
        int error = Marshal.GetLastPInvokeError();
        if (error == ErrorLockViolation) return false;
        throw new NotSupportedException(Marshal.GetPInvokeErrorMessage(error));
    }

    /// <summary>Drops a lock taken by <see cref="TryLock"/> on the same handle.</summary>
    public static void Unlock(SafeFileHandle control, long offset)
    {
        var overlapped = new Overlapped { Offset = offset };
        UnlockFileEx(control, 0, 1, 0, &overlapped);
    }
}
