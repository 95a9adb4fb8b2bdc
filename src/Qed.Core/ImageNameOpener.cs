using Qed.Storage;

namespace Qed;

/// <summary>
/// Opens the storage an image name stands for: a plain path or a <c>file</c> node is the host file; a blkdebug node
/// wraps its image in a <see cref="FaultInjectingStorage"/>; a format node in a storage place (a nested format) is that
/// image's contents, through <see cref="DiskImageStorage"/>.
/// </summary>
internal static class ImageNameOpener
{
    /// <summary>
    /// The storage under the format of <paramref name="path"/> and the format the name sets (null: probe or the
    /// caller's). Missing host files throw <see cref="FileNotFoundException"/> as <see cref="FileStorage.Open(string, FileAccess, CacheMode, FileLockMode)"/> does.
    /// </summary>
    public static async Task<(IBlockStorage Storage, string? Format)> OpenAsync(string path, ImageOpenOptions options, FileLockMode locking,
        CancellationToken ct)
    {
        ImageName? name;
        try
        {
            name = ImageName.TryParse(path);
        }
        catch (ArgumentException e)
        {
            throw new ImageFormatException(e.Message, inner: e);
        }
        if (name is null) return (FileStorage.Open(path, !options.ReadOnly, options.Cache, locking), null);
        ImageName storage;
        try
        {
            storage = name.Storage;
        }
        catch (ArgumentException e)
        {
            throw new ImageFormatException(e.Message, inner: e);
        }
        return (await OpenNodeAsync(path, storage, options, locking, ct).ConfigureAwait(false), name.Format ?? FilterFormat(name));
    }

    /// <summary>
    /// A blkdebug node over a format node is a filter: its guest contents are the image's as they are, so it is read as
    /// raw, never probed (qemu-img shows its format as "blkdebug" and probes nothing; a probe here would read sector 0
    /// through the rules, and data that starts with a magic would be taken for a header).
    /// </summary>
    private static string? FilterFormat(ImageName name) =>
        name.Driver == "blkdebug" && name.Child is { Format: not null } ? "raw" : null;

    private static async Task<IBlockStorage> OpenNodeAsync(string top, ImageName node, ImageOpenOptions options, FileLockMode locking, CancellationToken ct)
    {
        switch (node.Driver)
        {
            case "file":
                try
                {
                    return FileStorage.Open(node.Filename!, !options.ReadOnly, options.Cache, locking);
                }
                catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
                {
                    throw new ImageFormatException($"Could not open '{top}': Could not open '{node.Filename}': No such file or directory", inner: e);
                }
            case "blkdebug":
                var inner = await OpenNodeAsync(top, node.Child!, options, locking, ct).ConfigureAwait(false);
                return new FaultInjectingStorage(inner, node.Errors);
            case "quorum":
                var children = new List<IBlockStorage>();
                try
                {
                    foreach (var child in node.Children) children.Add(await OpenNodeAsync(top, child, options, locking, ct).ConfigureAwait(false));
                    return new QuorumStorage(children, node.VoteThreshold);
                }
                catch
                {
                    foreach (var child in children) child.Dispose();
                    throw;
                }
            default:
                // A format inside a format: its guest contents hold the outer image. Its own backing chain is followed.
                var image = await ImageOpener.OpenAsync(node.ToJsonName(), options with { Format = ImageFormatNames.FromName(node.Driver) }, ct).ConfigureAwait(false);
                return new DiskImageStorage(image);
        }
    }
}
