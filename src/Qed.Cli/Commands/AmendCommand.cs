using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed amend -o opts [-f fmt] FILE</c>: for QED, backing_file and backing_fmt change in place (as rebase -u);
/// other options cannot change without rewriting the image and are refused.
/// </summary>
internal static class AmendCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var options = new Option<string[]>("-o") { Description = "Options to change: backing_file=, backing_fmt=" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var file = new Argument<string>("FILE");
        var command = new Command("amend", "Change format options of an image in place") { format, options, quiet, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            var given = parse.GetValue(options) ?? [];
            if (given.Length == 0) throw new CommandException("Expecting one image file name and -o options");
            var opts = OptionList.Parse(given);
            string? name = opts.Take("backing_file");
            string? backingFormat = opts.Take("backing_fmt");
            string? fmt = parse.GetValue(format);
            await using (var image = await ImageArgs.OpenAsync(path, fmt, readOnly: true, noBacking: true, ct: ct))
            {
                if (image.Format != "qed")
                    throw new CommandException($"Amending {image.Format} images is not supported (only qed)");
                opts.ThrowIfAnyLeft("qed (only backing_file and backing_fmt can change in place)");
                var qed = (QedImage)image;
                name ??= qed.BackingFilename;
                if (name is null && backingFormat != null)
                    throw new CommandException($"Cannot set backing_fmt: '{path}' has no backing file (give backing_file too)");
                backingFormat ??= name == qed.BackingFilename ? qed.BackingFormat : null;
            }
            await RebaseOperation.RebaseAsync(path, "qed", name, backingFormat, safe: false, cancellationToken: ct);
            return 0;
        });
        return command;
    }
}
