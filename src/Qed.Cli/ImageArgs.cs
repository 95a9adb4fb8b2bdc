namespace Qed.Cli;

/// <summary>Opening images for commands, with qemu-img's wording for failures: <c>Could not open 'FILE': reason</c>.</summary>
internal static class ImageArgs
{
    /// <summary>
    /// Opens <paramref name="path"/>; any failure becomes one <see cref="CommandException"/> line naming the file (a
    /// lock conflict keeps its <see cref="ImageLockedException"/> as the inner exception, for qemu-img's second line).
    /// <paramref name="forceShare"/> is qemu-img's <c>-U</c>, refused with its words for a writable open.
    /// </summary>
    public static async Task<DiskImage> OpenAsync(string path, string? format, bool readOnly, bool noBacking = false, CancellationToken ct = default,
        Storage.CacheMode cache = Storage.CacheMode.WriteBack, bool forceShare = false)
    {
        if (format is not null and not ("qed" or "raw" or "qcow2"))
            throw new CommandException($"Unknown file format '{format}'");
        CheckForceShare(path, readOnly, forceShare);
        try
        {
            return await DiskImage.OpenAsync(path, new ImageOpenOptions
            {
                Format = ImageFormatNames.FromName(format), ReadOnly = readOnly, NoBacking = noBacking, Cache = cache, ForceShare = forceShare,
            }, ct);
        }
        catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or UnauthorizedAccessException or InvalidDataException)
        {
            string message = CliRunner.Describe(e);
            // qemu-img names a backing loop without the image opened ("Backing file 'X' creates an infinite loop.").
            throw new CommandException(message.StartsWith("Could not open '", StringComparison.Ordinal) || e is ImageFormatException { Field: ImageFormatException.BackingLoopField }
                ? message
                : $"Could not open '{path}': {message}", e);
        }
    }

    /// <summary>qemu-img's refusal of <c>-U</c> with an open that writes.</summary>
    public static void CheckForceShare(string path, bool readOnly, bool forceShare)
    {
        if (forceShare && !readOnly)
            throw new CommandException($"Could not open '{path}': force-share=on can only be used with read-only images");
    }

    /// <summary>The <c>-U</c>/<c>--force-share</c> option, as qemu-img spells it.</summary>
    public static System.CommandLine.Option<bool> ForceShareOption() =>
        new("-U", "--force-share") { Description = "Open read-only images shared (qemu-img -U): works beside a writer, whose changes may be seen half made" };
}

/// <summary>A failure whose message is already the line (or qemu-img's lines) to print.</summary>
internal sealed class CommandException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>False where qemu-img ends its message without a newline (create's "Detected format of qed.").</summary>
    public bool EndsLine { get; init; } = true;
}
