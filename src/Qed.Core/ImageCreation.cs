using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed;

/// <summary>What creating any image format shares: the size from a backing file, and no file left behind on failure.</summary>
internal static class ImageCreation
{
    /// <summary>
    /// The size to create: <paramref name="size"/> if given, else the backing file's. The backing file is opened (so a
    /// missing one is an error naming it) unless <paramref name="unsafeBacking"/> and a size is given, as qemu-img -u.
    /// </summary>
    public static async Task<long> ResolveSizeAsync(string path, long? size, string? backingFile, string? backingFormat, bool unsafeBacking, CancellationToken ct)
    {
        if (backingFile != null && (!unsafeBacking || size is null))
        {
            string resolved = QedImage.ResolveBackingPath(path, backingFile);
            await using var backing = await ImageOpener.OpenBackingAsync(resolved, backingFormat, path, ct).ConfigureAwait(false);
            size ??= backing.Size;
        }
        return size ?? throw new ArgumentException("Image creation needs a size parameter", nameof(size));
    }

    /// <summary>
    /// Creates (or replaces) the file and writes it. The file is opened and locked first (a file in use, or one that
    /// is not a regular file, is refused untouched); if writing fails, the file is removed only if this call created
    /// it: a name that existed before (a file, a link) is never unlinked.
    /// </summary>
    public static async Task WriteNewFileAsync(string path, Func<IBlockStorage, Task> write)
    {
        path = ImageName.HostPathOf(path); // file:NAME creates NAME
        var file = FileStorage.Create(path);
        try
        {
            await using (file.ConfigureAwait(false))
                await write(file).ConfigureAwait(false);
        }
        catch
        {
            if (file.CreatedFile) FileStorage.TryDelete(path);
            throw;
        }
    }
}
