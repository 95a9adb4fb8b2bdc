namespace Qed.Storage;

/// <summary>
/// What a <see cref="FileStorage"/> does natively on this host; each false means the fallback docs/platforms.md
/// states, which keeps the same guarantee. For tests and diagnostics: the switch QED_PORTABLE_IO shows here.
/// </summary>
/// <param name="PunchHoles">Discards free space (fallocate PUNCH_HOLE, F_PUNCHHOLE, FSCTL_SET_ZERO_DATA); else zeroes are written.</param>
/// <param name="Reserve">Growth reserves the space (fallocate); else the length is set.</param>
/// <param name="Sparse">Growth by setting the length leaves a hole (Unix files; Windows once marked sparse); else space is allocated.</param>
/// <param name="AllocationMap">Holes can be told from data (SEEK_DATA/SEEK_HOLE, FSCTL_QUERY_ALLOCATED_RANGES); else all is data.</param>
/// <param name="BypassCache">cache=none/directsync have a cache-bypassing handle; else the buffered one alone.</param>
/// <param name="RangedDurableWrites">A durable write syncs its range alone (RWF_DSYNC); else a write and a flush.</param>
/// <param name="CachedReads">Small reads are tried from the page cache inline (RWF_NOWAIT); else on the thread pool.</param>
/// <param name="Locks">Which locks hold QEMU's lock bytes.</param>
internal readonly record struct FileCapabilities(bool PunchHoles, bool Reserve, bool Sparse, bool AllocationMap, bool BypassCache,
    bool RangedDurableWrites, bool CachedReads, LockKind Locks);

/// <summary>Which host locks hold QEMU's image-lock bytes.</summary>
internal enum LockKind
{
    /// <summary>None: the host has no byte-range locks that qed uses.</summary>
    None,
    /// <summary>Linux OFD locks, as QEMU takes them.</summary>
    Ofd,
    /// <summary>POSIX record locks (macOS; Linux under QED_PORTABLE_IO), kept per open by a table in the process.</summary>
    PosixRecord,
    /// <summary>Windows LockFileEx on the bytes moved far past the end of the file.</summary>
    WindowsByteRange,
}
