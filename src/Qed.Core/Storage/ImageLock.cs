using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>How a file is locked against other openers (QEMU's image locking, which qemu-img and qemu-nbd honour).</summary>
public enum FileLockMode
{
    /// <summary>
    /// As QEMU's tools lock: a reader takes "consistent read" and refuses to share "write" and "resize" (so no writer
    /// can open beside it); a writer also takes "write" and "resize". A conflicting opener is refused.
    /// </summary>
    Default,

    /// <summary>
    /// As qemu-img's <c>-U</c> (<c>force-share=on</c>): only "consistent read" is taken and everything is shared, so
    /// the open works beside a writer (and may see its data change). Read-only opens only.
    /// </summary>
    ForceShare,

    /// <summary>No locks are taken or tested.</summary>
    None,
}

/// <summary>QEMU's permission bits, numbered as its lock bytes are (100 + bit: held, 200 + bit: not shared).</summary>
[Flags]
internal enum ImagePermissions
{
    None = 0,
    ConsistentRead = 1,
    Write = 2,
    WriteUnchanged = 4,
    Resize = 8,
    All = 15,
}

/// <summary>
/// Takes QEMU's image locks on an open file, observed from QEMU 7.2 in /proc/locks: for each permission held, a
/// shared OFD lock on byte 100 + bit; for each permission not shared with others, one on byte 200 + bit. An opener
/// then tests the bytes that would conflict: another open file's lock on 200 + bit of a permission it wants ("Failed
/// to get "write" lock"), or on 100 + bit of one it refuses to share ("Failed to get shared "write" lock"). Taking
/// before testing means that of two openers racing, at least one sees the other. The locks go when the file closes.
/// </summary>
internal static class ImageLock
{
    private const int HeldBase = 100;
    private const int UnsharedBase = 200;
    private const int Bits = 4;
    private static readonly string[] Names = ["consistent read", "write", "write unchanged", "resize"];

    /// <summary>What qemu-img's read-only opens hold and share (and every backing file).</summary>
    public static readonly (ImagePermissions Held, ImagePermissions Shared) Reader =
        (ImagePermissions.ConsistentRead, ImagePermissions.All & ~(ImagePermissions.Write | ImagePermissions.Resize));

    /// <summary>What qemu-img's read-write opens hold and share.</summary>
    public static readonly (ImagePermissions Held, ImagePermissions Shared) Writer =
        (ImagePermissions.ConsistentRead | ImagePermissions.Write | ImagePermissions.Resize, Reader.Shared);

    /// <summary>qemu-img -U: reads, shares everything.</summary>
    public static readonly (ImagePermissions Held, ImagePermissions Shared) SharedReader =
        (ImagePermissions.ConsistentRead, ImagePermissions.All);

    /// <summary>What qemu-img create holds while it truncates and formats a file: write and resize; only resize is not shared.</summary>
    public static readonly (ImagePermissions Held, ImagePermissions Shared) Creator =
        (ImagePermissions.Write | ImagePermissions.Resize, ImagePermissions.All & ~ImagePermissions.Resize);

    /// <summary>The permissions an opener takes.</summary>
    public static (ImagePermissions Held, ImagePermissions Shared)? For(FileLockMode mode, bool writable) => mode switch
    {
        FileLockMode.None => null,
        FileLockMode.ForceShare when writable =>
            throw new ArgumentException("force-share=on can only be used with read-only images", nameof(mode)),
        FileLockMode.ForceShare => SharedReader,
        _ => writable ? Writer : Reader,
    };

    /// <summary>
    /// Takes the locks for <paramref name="permissions"/> on <paramref name="handle"/> and tests for conflicts, with
    /// the host's locks: OFD locks on Linux (QEMU's), POSIX record locks on macOS and under QED_PORTABLE_IO
    /// (<see cref="PosixLocks"/>), LockFileEx on Windows (<see cref="WindowsLocks"/>). Returns what to dispose, before
    /// the handle is closed, to let the locks go (null when closing the handle is enough, or nothing was taken: a
    /// file that cannot take locks is opened without, as QEMU does).
    /// </summary>
    /// <exception cref="ImageLockedException">Another open file conflicts; the locks taken here are dropped.</exception>
    public static IDisposable? Acquire(SafeFileHandle handle, string path, NativeLock.FileId? id, (ImagePermissions Held, ImagePermissions Shared) permissions)
    {
        var (held, shared) = permissions;
        var unshared = ImagePermissions.All & ~shared;
        var take = new List<int>();
        for (int bit = 0; bit < Bits; bit++)
            if (held.HasFlag((ImagePermissions)(1 << bit))) take.Add(HeldBase + bit);
        for (int bit = 0; bit < Bits; bit++)
            if (unshared.HasFlag((ImagePermissions)(1 << bit))) take.Add(UnsharedBase + bit);
        // Someone refuses to share what we want, then someone holds what we refuse to share (QEMU's order).
        var tests = new List<(int, string)>();
        for (int bit = 0; bit < Bits; bit++)
            if (held.HasFlag((ImagePermissions)(1 << bit))) tests.Add((UnsharedBase + bit, $"Failed to get \"{Names[bit]}\" lock"));
        for (int bit = 0; bit < Bits; bit++)
            if (unshared.HasFlag((ImagePermissions)(1 << bit))) tests.Add((HeldBase + bit, $"Failed to get shared \"{Names[bit]}\" lock"));
        if (HostIO.Windows) return WindowsLocks.Acquire(handle, path, take, tests);
        if (HostIO.PosixLocks) return PosixLocks.Acquire(handle, path, id, take, tests);
        AcquireOfd(handle, path, take, tests);
        return null;
    }

    /// <summary>OFD locks: take every byte, then test (of two openers racing, at least one sees the other).</summary>
    private static void AcquireOfd(SafeFileHandle handle, string path, List<int> take, List<(int Offset, string Reason)> tests)
    {
        if (!NativeLock.IsSupported(handle, path)) return;
        var taken = new List<int>();
        try
        {
            foreach (int offset in take)
            {
                // Nobody takes exclusive locks on these bytes, so a shared one is refused only by a foreign locker.
                if (NativeLock.SetShared(handle, path, offset) != NativeLock.Result.Ok)
                    throw new ImageLockedException(path, $"Failed to lock byte {offset}");
                taken.Add(offset);
            }
            foreach (var (offset, reason) in tests)
                if (NativeLock.TestOthers(handle, path, offset) == NativeLock.Result.Conflict)
                    throw new ImageLockedException(path, reason);
        }
        catch
        {
            foreach (int b in taken) NativeLock.SetShared(handle, path, b, unlock: true);
            throw;
        }
    }
}
