using System.CommandLine;

namespace Qed.Cli.Commands;

/// <summary><c>qed create [-f fmt] [-o opts] [-b file -F fmt] [-u] FILE [SIZE]</c>.</summary>
internal static class CreateCommand
{
    public static Command Build()
    {
        var format = new Option<string>("-f") { Description = "Image format (qed, qcow2, raw)", DefaultValueFactory = _ => "raw" };
        var options = new Option<string[]>("-o") { Description = "Format options: cluster_size=, table_size=, backing_file=, backing_fmt=", AllowMultipleArgumentsPerToken = false };
        var backing = new Option<string?>("-b") { Description = "Backing file" };
        var backingFormat = new Option<string?>("-F") { Description = "Backing file format" };
        var unsafeBacking = new Option<bool>("-u") { Description = "Do not open the backing file (size must be given)" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var file = new Argument<string>("FILE");
        var size = new Argument<string?>("SIZE") { Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("create", "Create a new image") { format, options, backing, backingFormat, unsafeBacking, quiet, file, size };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            var opts = OptionList.Parse(parse.GetValue(options) ?? []);
            string? b = parse.GetValue(backing) ?? opts.Take("backing_file");
            string? bf = parse.GetValue(backingFormat) ?? opts.Take("backing_fmt");
            if (b != null && bf == null) throw new ArgumentException("Backing file specified without backing format");
            long? bytes = parse.GetValue(size) is { } s ? SizeParser.Parse(s) : opts.TakeSize("size");
            try
            {
                await ImageCreator.CreateAsync(parse.GetValue(format)!, path, bytes, opts, b, bf, parse.GetValue(unsafeBacking), ct);
            }
            catch (ImageLockedException e)
            {
                throw new CommandException($"{path}: {e.Reason}", e); // qemu-img's words for a file in use
            }
            return 0;
        });
        return command;
    }
}
