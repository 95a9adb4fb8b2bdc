using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// Which files can hold an image: regular files and block devices. Anything else is refused by name before it is
/// opened (opening a FIFO read-only blocks until a writer comes, and reading one consumes it; a directory or device
/// has no image in it).
/// </summary>
internal static class FileKind
{
    /// <summary>Throws unless <paramref name="path"/> (through symlinks) is a regular file or block device, or absent.</summary>
    /// <exception cref="UnsupportedFileException">It is a FIFO, socket, directory or character device.</exception>
    public static void EnsureOpenable(string path)
    {
        if (NativeLock.Stat(path) is { } id) EnsureOpenable(id, path);
    }

    /// <summary>The same check on an open file (the path may have been replaced between the look and the open).</summary>
    public static NativeLock.FileId? EnsureOpenable(SafeFileHandle handle, string path)
    {
        var id = NativeLock.Stat(handle);
        if (id is { } known) EnsureOpenable(known, path);
        return id;
    }

    private static void EnsureOpenable(NativeLock.FileId id, string path)
    {
        if (id.Type is not (NativeLock.FileId.Regular or NativeLock.FileId.BlockDevice))
            throw new UnsupportedFileException(path, $"'file' driver requires '{path}' to be a regular file"); // qemu-img's words
    }

    /// <summary>
    /// Throws unless a new image may be written at <paramref name="path"/>: nothing there, a dangling symlink, or a
    /// regular file (which is replaced). A directory, device, FIFO or socket is never truncated or replaced.
    /// </summary>
    public static void EnsureCreatable(string path)
    {
        if (NativeLock.Stat(path) is not { } id) return;
        if (id.Type == NativeLock.FileId.Directory) throw new UnsupportedFileException(path, "Is a directory", verb: "create");
        if (id.Type != NativeLock.FileId.Regular)
            throw new UnsupportedFileException(path, $"Not a regular file ({Describe(id.Type)}); only regular files are created", verb: "create");
    }

    /// <summary>Whether anything, even a dangling symlink, has the name <paramref name="path"/>.</summary>
    public static bool Exists(string path) =>
        NativeLock.Stat(path, noFollow: true) is not null || File.Exists(path) || Directory.Exists(path);

    /// <summary>Whether two names are one file (same device and inode); false if either is missing or unknown.</summary>
    public static bool SameFile(string a, string b) =>
        NativeLock.Stat(a) is { } x && NativeLock.Stat(b) is { } y
            ? x.Device == y.Device && x.Inode == y.Inode
            : string.Equals(ImageOpener.Canonical(a), ImageOpener.Canonical(b), StringComparison.Ordinal) && File.Exists(a);

    private static string Describe(int type) => type switch
    {
        NativeLock.FileId.Fifo => "a FIFO",
        NativeLock.FileId.Socket => "a socket",
        NativeLock.FileId.Directory => "a directory",
        NativeLock.FileId.CharDevice => "a character device",
        NativeLock.FileId.BlockDevice => "a block device",
        _ => "not a regular file",
    };
}

/// <summary>A path names something that cannot hold an image (a FIFO, directory, socket or character device).</summary>
internal sealed class UnsupportedFileException(string path, string reason, string? openedAs = null, string verb = "open")
    : IOException($"Could not {verb} '{openedAs ?? path}': {reason}")
{
    /// <summary>The file refused.</summary>
    public string FilePath { get; } = path;

    /// <summary>The failure without the image name.</summary>
    public string Reason { get; } = reason;
}
