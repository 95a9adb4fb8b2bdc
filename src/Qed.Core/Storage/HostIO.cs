namespace Qed.Storage;

/// <summary>
/// Which host's native file calls <see cref="FileStorage"/> makes, decided once per process. Each capability has a
/// native path per platform and a portable fallback that keeps its guarantee (docs/platforms.md has the table).
/// </summary>
/// <remarks>
/// <c>QED_PORTABLE_IO=1</c> turns every Linux-only call off on Linux (fallocate, hole punching, SEEK_DATA/SEEK_HOLE,
/// O_DIRECT, RWF_DSYNC and RWF_NOWAIT, fdatasync, OFD locks), so the fallbacks that other hosts run are tested here:
/// .NET's own calls, and the POSIX record locks macOS uses. The file type and identity calls (statx) stay on: every
/// host has its own, and without them a FIFO would hang an open. Read once: a process does not change paths midway.
/// </remarks>
internal static class HostIO
{
    /// <summary>The environment variable that turns the Linux-only calls off.</summary>
    public const string PortableVariable = "QED_PORTABLE_IO";

    /// <summary>Whether <c>QED_PORTABLE_IO=1</c> was set when the process first used a file.</summary>
    public static readonly bool Portable = Environment.GetEnvironmentVariable(PortableVariable) == "1";

    /// <summary>Whether the Linux-only calls are made: 64-bit Linux (x64 or Arm64, whose struct layouts these are), not portable.</summary>
    public static readonly bool Linux = OperatingSystem.IsLinux() && Environment.Is64BitProcess && !Portable;

    /// <summary>Whether the macOS calls are made (F_PUNCHHOLE, F_NOCACHE, F_FULLFSYNC, SEEK_DATA/SEEK_HOLE): 64-bit macOS.</summary>
    public static readonly bool MacOS = OperatingSystem.IsMacOS() && Environment.Is64BitProcess;

    /// <summary>Whether the Windows calls are made (sparse files, FSCTL_SET_ZERO_DATA, allocated ranges, LockFileEx).</summary>
    public static readonly bool Windows = OperatingSystem.IsWindows();

    /// <summary>
    /// Whether image locks are POSIX record locks (fcntl F_SETLK/F_GETLK), which belong to the process: on macOS, which
    /// has no OFD locks, and on Linux under <see cref="Portable"/>.
    /// </summary>
    public static readonly bool PosixLocks = MacOS || (OperatingSystem.IsLinux() && Environment.Is64BitProcess && Portable);
}
