namespace Qed.Cli;

/// <summary>Opening images for commands, with qemu-img's wording for failures: <c>Could not open 'FILE': reason</c>.</summary>
internal static class ImageArgs
{
    /// <summary>Opens <paramref name="path"/>; any failure becomes one <see cref="CommandException"/> line naming the file.</summary>
    public static async Task<DiskImage> OpenAsync(string path, string? format, bool readOnly, bool noBacking = false, CancellationToken ct = default,
        Storage.CacheMode cache = Storage.CacheMode.WriteBack)
    {
        if (format is not null and not ("qed" or "raw" or "qcow2"))
            throw new CommandException($"Unknown file format '{format}'");
        try
        {
            return await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = format, ReadOnly = readOnly, NoBacking = noBacking, Cache = cache }, ct);
        }
        catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or UnauthorizedAccessException or InvalidDataException)
        {
            string message = CliRunner.Describe(e);
            throw new CommandException(message.StartsWith("Could not open '", StringComparison.Ordinal)
                ? message
                : $"Could not open '{path}': {message}", e);
        }
    }
}

/// <summary>A failure whose message is already the one line to print.</summary>
internal sealed class CommandException(string message, Exception? inner = null) : Exception(message, inner);
