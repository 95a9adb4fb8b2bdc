using System.CommandLine;

namespace Qed.Cli;

/// <summary>
/// qemu-img's <c>--image-opts</c>: the image operand is an option string (<c>driver=qed,file.filename=F</c>) rather
/// than a file name. It becomes the name <see cref="ImageArgs.OpenAsync"/> takes: a plain path and format when that is
/// all it says, else a <c>json:</c> name (blkdebug, nested formats).
/// </summary>
internal static class ImageOptsArgs
{
    /// <summary>The <c>--image-opts</c> flag, as qemu-img spells it.</summary>
    public static Option<bool> Option() =>
        new("--image-opts") { Description = "Treat the image operand as an option string (driver=qed,file.filename=FILE), as qemu-img" };

    /// <summary>
    /// The path and format to open for <paramref name="operand"/>; unchanged without <paramref name="imageOpts"/>.
    /// Throws <see cref="CommandException"/> with qemu-img's words for -f beside it and for options it refuses.
    /// </summary>
    public static (string Path, string? Format) Resolve(string operand, bool imageOpts, string? format)
    {
        if (!imageOpts) return (operand, format);
        if (format != null) throw new CommandException("--image-opts and --format are mutually exclusive");
        try
        {
            var name = ImageName.FromOptions(operand, null);
            // qemu-img names the option string first; a plain path opened below would be named alone.
            string host = name.HostFile;
            if (!File.Exists(host) && !Directory.Exists(host))
                throw new CommandException($"Could not open '{operand}': Could not open '{host}': No such file or directory");
            return Simplify(name);
        }
        catch (ArgumentException e)
        {
            throw new CommandException($"Could not open '{operand}': {e.Message}", e);
        }
    }

    /// <summary>A format over a plain file is opened by path (so messages name the file); anything else by its json: name.</summary>
    public static (string Path, string? Format) Simplify(ImageName name)
    {
        if (name.Driver == "file") return (name.Filename!, null);
        if (name.Child is { Driver: "file", Filename: { } file })
            return (ImageName.IsSpecial(file) ? new ImageName("file", file, null, []).ToJsonName() : file, name.Format);
        return (name.ToJsonName(), null);
    }
}
