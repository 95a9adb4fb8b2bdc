using System.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed bitmap (--add | --remove | --clear | --enable | --disable | --merge SRC)... [-f fmt] [-g size] [-b file -F fmt]
/// FILE BITMAP</c>, qemu-img bitmap's answers for formats without persistent dirty bitmaps (QED and raw), as observed
/// on qemu-img 7.2: adding fails because the format cannot store one, every other operation because the bitmap does
/// not exist; the first operation named fails, exit 1. (qemu-img names the image by its internal node name, "#blockNNN"; qed names the file.) qcow2 bitmaps are not implemented, so on qcow2 it is refused.
/// </summary>
internal static class BitmapCommand
{
    public static Command Build()
    {
        var add = new Option<bool>("--add") { Description = "Add a persistent bitmap (refused: the format cannot store one)" };
        var remove = new Option<bool>("--remove") { Description = "Remove a bitmap" };
        var clear = new Option<bool>("--clear") { Description = "Clear a bitmap" };
        var enable = new Option<bool>("--enable") { Description = "Enable a bitmap" };
        var disable = new Option<bool>("--disable") { Description = "Disable a bitmap" };
        var merge = new Option<string?>("--merge") { Description = "Merge another bitmap into this one" };
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var granularity = new Option<string?>("-g") { Description = "Granularity of an added bitmap" };
        var mergeFile = new Option<string?>("-b") { Description = "Image holding the --merge source bitmap" };
        var mergeFormat = new Option<string?>("-F") { Description = "Format of the -b image" };
        var args = new Argument<string[]>("FILE BITMAP") { Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("bitmap", "Change persistent dirty bitmaps (QED and raw have none)")
        {
            add, remove, clear, enable, disable, merge, format, granularity, mergeFile, mergeFormat, args,
        };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            // The operations in the order they were written: qemu-img performs them in that order and stops at the first failure.
            var named = parse.Tokens.Select(t => t.Value)
                .Where(v => v is "--add" or "--remove" or "--clear" or "--enable" or "--disable" or "--merge")
                .Select(v => v[2..])
                .ToList();
            if (named.Count == 0)
                throw new CommandException("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
            string[] positional = parse.GetValue(args) ?? [];
            if (positional.Length != 2) throw new CommandException("Expecting filename and bitmap name");
            string path = positional[0], bitmap = positional[1];
            await using var image = await ImageArgs.OpenAsync(path, parse.GetValue(format), readOnly: false, ct: ct);
            ProbeWarning.PrintIfProbedRaw(image, path);
            if (image.Format == ImageFormat.Qcow2) throw new CommandException($"'{path}': qcow2 persistent bitmaps are not supported by qed");
            string first = named[0];
            string reason = first == "add"
                ? $"Can't store persistent bitmaps to {path}: Operation not supported"
                : $"Dirty bitmap '{bitmap}' not found";
            throw new CommandException($"Operation {first} on bitmap {bitmap} failed: {reason}");
        });
        return command;
    }
}
