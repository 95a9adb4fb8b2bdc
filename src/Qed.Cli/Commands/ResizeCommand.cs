using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary><c>qed resize [-f fmt] [--shrink] FILE [+|-]SIZE</c>, as qemu-img resize.</summary>
internal static class ResizeCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var shrink = new Option<bool>("--shrink") { Description = "Allow shrinking: data past the new end is dropped" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var prealloc = new Option<string?>("--preallocation") { Description = "Only off is supported" };
        var file = new Argument<string>("FILE");
        // "-1G" looks like an option to the parser, so the size is taken from the unmatched tokens too.
        var size = new Argument<string?>("SIZE") { Arity = ArgumentArity.ZeroOrOne, Description = "New size, or +SIZE / -SIZE relative to the current one" };
        var imageOpts = ImageOptsArgs.Option();
        var command = new Command("resize", "Change the virtual size of an image") { format, shrink, quiet, prealloc, imageOpts, file, size };
        command.TreatUnmatchedTokensAsErrors = false;
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var (path, fmt) = ImageOptsArgs.Resolve(parse.GetValue(file)!, parse.GetValue(imageOpts), parse.GetValue(format));
            string? text = parse.GetValue(size) ?? parse.UnmatchedTokens.FirstOrDefault();
            if (text is null) throw new CommandException("Expecting image file name and size");
            if (parse.UnmatchedTokens.Count > (parse.GetValue(size) is null ? 1 : 0))
                throw new CommandException($"Unrecognized argument '{parse.UnmatchedTokens[^1]}'");
            if (parse.GetValue(prealloc) is { } p && p != "off") throw new CommandException($"Unsupported preallocation mode '{p}'");
            int sign = text.StartsWith('+') ? 1 : text.StartsWith('-') ? -1 : 0;
            if (!SizeParser.TryParse(sign == 0 ? text : text[1..], out long bytes))
                throw new CommandException($"Invalid image size specified: '{text}'");
            // A relative size is resolved by the operation, after its read-write open (qemu-img's order and lock words).
            await ResizeOperation.ResizeAsync(path, fmt, bytes, sign, parse.GetValue(shrink), ct);
            if (!parse.GetValue(quiet)) Console.WriteLine("Image resized.");
            return 0;
        });
        return command;
    }
}
