using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// The file calls .NET does not expose, each sent to the host's own (<see cref="LinuxFile"/>, <see cref="MacFile"/>,
/// <see cref="WindowsFile"/>) as <see cref="HostIO"/> decided, and each answering "cannot" where the host has none,
/// so that the caller takes the fallback docs/platforms.md states for it. Calls that take a control handle get the
/// storage's synchronous second handle on Windows and its own handle elsewhere.
/// </summary>
internal static class NativeFile
{
    /// <summary>Whether <see cref="TryPunchHole"/> has a host call to try (the filesystem may still refuse).</summary>
    public static bool CanPunchHoles => HostIO.Linux || HostIO.MacOS || HostIO.Windows;

    /// <summary>Whether <see cref="TryAllocate"/> has a host call to try and the filesystem has not refused it.</summary>
    public static bool CanReserve => HostIO.Linux && LinuxFile.AllocateWorks;

    /// <summary>Whether <see cref="FindRun"/> has a host call to ask.</summary>
    public static bool CanMapAllocation => HostIO.Linux || HostIO.MacOS || HostIO.Windows;

    /// <summary>Whether <see cref="TryWriteDsync"/> has a host call (RWF_DSYNC) to try.</summary>
    public static bool CanWriteRangeDurably => HostIO.Linux;

    /// <summary>Whether <see cref="TryReadCached"/> has a host call (RWF_NOWAIT) to try.</summary>
    public static bool CanReadCached => HostIO.Linux;

    /// <summary>A synced write of this range alone (Linux RWF_DSYNC); false elsewhere: the caller writes, then flushes.</summary>
    public static bool TryWriteDsync(SafeFileHandle handle, ReadOnlySpan<byte> data, long offset) =>
        HostIO.Linux && LinuxFile.TryWriteDsync(handle, data, offset);

    /// <summary>A read from the page cache without blocking (Linux RWF_NOWAIT); -1 elsewhere: the caller reads normally.</summary>
    public static int TryReadCached(SafeFileHandle handle, Span<byte> buffer, long offset) =>
        HostIO.Linux ? LinuxFile.TryReadCached(handle, buffer, offset) : -1;

    /// <summary>
    /// Makes the range read as zeroes without writing them where the host can (fallocate PUNCH_HOLE, F_PUNCHHOLE,
    /// FSCTL_SET_ZERO_DATA), the length unchanged; false when it cannot, and the caller writes zeroes.
    /// </summary>
    public static bool TryPunchHole(SafeFileHandle control, long offset, long length)
    {
        if (HostIO.Linux) return LinuxFile.TryPunchHole(control, offset, length);
        if (HostIO.MacOS) return MacFile.TryPunchHole(control, offset, length);
        if (HostIO.Windows) return WindowsFile.TryZeroData(control, offset, length);
        return false;
    }

    /// <summary>Reserves the range, growing the file (Linux fallocate); false elsewhere: the caller sets the length.</summary>
    public static bool TryAllocate(SafeFileHandle handle, long offset, long length) =>
        HostIO.Linux && LinuxFile.TryAllocate(handle, offset, length);

    /// <summary>
    /// Makes every completed write durable on the medium: fdatasync on Linux, F_FULLFSYNC on macOS (fsync there stops
    /// at the drive's cache), FlushFileBuffers on Windows, fsync under QED_PORTABLE_IO (RandomAccess.FlushToDisk).
    /// </summary>
    public static void Sync(SafeFileHandle handle)
    {
        if (HostIO.Linux && LinuxFile.TryDataSync(handle)) return;
        if (HostIO.MacOS)
        {
            MacFile.FullSync(handle);
            return;
        }
        RandomAccess.FlushToDisk(handle);
    }

    /// <summary>
    /// Whether <paramref name="offset"/> is in data or a hole and where that run ends (capped at <paramref name="end"/>);
    /// null where the host cannot tell (then everything counts as data).
    /// </summary>
    public static (bool IsData, long RunEnd)? FindRun(SafeFileHandle control, long offset, long end)
    {
        if (HostIO.Linux) return LinuxFile.FindRun(control, offset, end);
        if (HostIO.MacOS) return MacFile.FindRun(control, offset, end);
        if (HostIO.Windows) return WindowsFile.FindRun(control, offset, end);
        return null;
    }
}
