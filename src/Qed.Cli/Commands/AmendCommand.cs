using System.CommandLine;
using Qed.Operations;
using Qed.Formats.Qed;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed amend -o opts [-f fmt] FILE</c>: for QED, backing_file and backing_fmt change in place (through rebase -u),
/// provided the backing file is of the format named, so the image never reads a file as another format; other options
/// cannot change without rewriting the image and are refused.
/// </summary>
internal static class AmendCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var options = new Option<string[]>("-o") { Description = "Options to change: backing_file=, backing_fmt=" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var file = new Argument<string>("FILE");
        var imageOpts = ImageOptsArgs.Option();
        var command = new Command("amend", "Change format options of an image in place") { format, options, quiet, imageOpts, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var (path, fmt) = ImageOptsArgs.Resolve(parse.GetValue(file)!, parse.GetValue(imageOpts), parse.GetValue(format));
            var given = parse.GetValue(options) ?? [];
            if (given.Length == 0) throw new CommandException("Expecting one image file name and -o options");
            var opts = OptionList.Parse(given);
            string? name = opts.Take("backing_file");
            string? backingFormat = opts.Take("backing_fmt");
            await using (var image = await ImageArgs.OpenAsync(path, fmt, readOnly: true, noBacking: true, ct: ct))
            {
                if (image.Format != ImageFormat.Qed)
                    throw new CommandException($"Amending {image.Format.Name()} images is not supported (only qed)");
                opts.ThrowIfAnyLeft("qed (only backing_file and backing_fmt can change in place)");
                var qed = (QedImage)image;
                name ??= qed.BackingFilename;
                if (name is null && backingFormat != null)
                    throw new CommandException($"Cannot set backing_fmt: '{path}' has no backing file (give backing_file too)");
                bool formatNamed = backingFormat != null;
                backingFormat ??= name == qed.BackingFilename ? qed.BackingFormat?.Name() : null;
                // QED stores only "raw" (NO_PROBE) or "probe"; a named format is checked even where the header stays.
                bool headerStays = name == qed.BackingFilename && (backingFormat == "raw") == (qed.BackingFormat == ImageFormat.Raw);
                if (!string.IsNullOrEmpty(name) && (!headerStays || formatNamed)) await CheckBackingFormatAsync(path, name, backingFormat, ct);
            }
            await RebaseOperation.RebaseAsync(path, "qed", name, backingFormat, safe: false, cancellationToken: ct);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Amend, unlike rebase -u, must not change what the image reads by reading its backing file as another format
    /// (a QED or qcow2 file read as raw shows its metadata; qemu-img refuses to amend a backing file at all). So the
    /// new backing file must exist and be of the format named, or of any format when none is named (it is probed).
    /// </summary>
    private static async Task CheckBackingFormatAsync(string path, string name, string? backingFormat, CancellationToken ct)
    {
        string resolved = QedImage.ResolveBackingPath(path, name);
        string actual;
        try
        {
            await using var backing = await DiskImage.OpenAsync(resolved, new ImageOpenOptions { ReadOnly = true, NoBacking = true }, ct);
            actual = backing.Format.Name();
        }
        catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or UnauthorizedAccessException)
        {
            throw new CommandException($"Cannot amend the backing file of '{path}' to '{name}': {CliRunner.Describe(e)}", e);
        }
        if (backingFormat != null && backingFormat != actual)
            throw new CommandException($"Cannot amend the backing format of '{path}' to '{backingFormat}': '{name}' is a {actual} image "
                + $"(reading it as {backingFormat} would change what the image reads; 'qed rebase -u -F {backingFormat}' does it anyway)");
    }
}
