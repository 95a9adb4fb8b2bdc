using System.CommandLine;
using Qed.Formats.Qed;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed create [-q] [-f fmt] [-o opts] [-b file -F fmt] [-u] FILE [SIZE]</c>, as qemu-img 7.2: prints its
/// <c>Formatting 'FILE', fmt=...</c> line (unless -q), and words every failure <c>FILE: reason</c>.
/// </summary>
internal static class CreateCommand
{
    public static Command Build()
    {
        var format = new Option<string>("-f") { Description = "Image format (qed, qcow2, raw)", DefaultValueFactory = _ => "raw" };
        var options = new Option<string[]>("-o") { Description = "Format options: cluster_size=, table_size=, backing_file=, backing_fmt=", AllowMultipleArgumentsPerToken = false };
        var backing = new Option<string?>("-b") { Description = "Backing file" };
        var backingFormat = new Option<string?>("-F") { Description = "Backing file format" };
        var unsafeBacking = new Option<bool>("-u") { Description = "Do not open the backing file (size must be given)" };
        var quiet = new Option<bool>("-q") { Description = "Quiet: no 'Formatting ...' line" };
        var file = new Argument<string>("FILE");
        var size = new Argument<string?>("SIZE") { Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("create", "Create a new image") { format, options, backing, backingFormat, unsafeBacking, quiet, file, size };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            try
            {
                string fmt = parse.GetValue(format)!;
                if (fmt is not ("qed" or "qcow2" or "raw")) throw new CommandException($"Unknown file format '{fmt}'");
                var opts = OptionList.Parse(parse.GetValue(options) ?? []);
                string? b = parse.GetValue(backing) ?? opts.Take("backing_file");
                string? bf = parse.GetValue(backingFormat) ?? opts.Take("backing_fmt");
                long? bytes = parse.GetValue(size) is { } s ? SizeParser.Parse(s) : opts.TakeSize("size");
                bool unsafeOpen = parse.GetValue(unsafeBacking);
                if (b != null && fmt == "raw") throw new CommandException("Backing file not supported for file format 'raw'");
                if (b != null && !(unsafeOpen && bytes != null))
                    bytes ??= await BackingSizeAsync(path, b, bf, ct);
                else if (b != null && bf == null)
                    throw new CommandException("Backing file specified without backing format");
                // The backing file was opened (or -u given with a size): the core need not open it again.
                await ImageCreator.CreateAsync(fmt, path, bytes, opts, b, bf, unsafeBacking: b != null, ct,
                    parse.GetValue(quiet) ? null : line => { Console.Out.WriteLine(line); Console.Out.Flush(); });
            }
            catch (ImageLockedException e)
            {
                throw new CommandException($"{path}: {e.Reason}", e); // qemu-img's words for a file in use
            }
            catch (Exception e) when (e is CommandException or ArgumentException or ImageFormatException or IOException or NotSupportedException
                or UnauthorizedAccessException or InvalidDataException)
            {
                throw new CommandException($"{path}: {(e is CommandException ? e.Message : CliRunner.Describe(e))}", e) { EndsLine = e is not CommandException { EndsLine: false } };
            }
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Opens the backing file as qemu-img create does (read-only, shared) for its size; a failure is qemu-img's two
    /// lines, the reason then <c>Could not open backing image.</c>, and so is a missing <c>-F</c> (with the format found).
    /// </summary>
    private static async Task<long?> BackingSizeAsync(string path, string backing, string? backingFormat, CancellationToken ct)
    {
        string resolved = QedImage.ResolveBackingPath(path, backing);
        // qemu-img looks the driver up before it opens the file.
        ImageFormat? format = backingFormat is null ? null : ImageFormatNames.TryParse(backingFormat, out var named) ? named
            : throw new CommandException($"Unknown driver '{backingFormat}'\nCould not open backing image.");
        DiskImage image;
        try
        {
            image = await DiskImage.OpenAsync(resolved, new ImageOpenOptions { Format = format, ReadOnly = true, ForceShare = true }, ct);
        }
        catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or UnauthorizedAccessException or InvalidDataException
            or ArgumentException)
        {
            // The driver's reason as is: only a file that cannot be opened at all names it ("Could not open 'X': ...").
            throw new CommandException($"{CliRunner.Describe(e)}\nCould not open backing image.", e);
        }
        await using (image)
        {
            if (backingFormat == null)
                throw new CommandException($"Backing file specified without backing format\nDetected format of {image.Format.Name()}.") { EndsLine = false };
            return image.Size;
        }
    }
}
