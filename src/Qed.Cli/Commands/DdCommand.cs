using System.CommandLine;
using System.Globalization;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed dd [-U] [-f fmt] [-O fmt] [bs=N] [count=N] [skip=N] if=SRC of=DST</c>, as qemu-img dd: a new image DST of
/// format <c>-O</c> (raw by default) receives the source's bytes from <c>skip*bs</c>, <c>bs</c> at a time, every
/// block written (zeroes too). The facts below were observed on qemu-img 7.2:
/// <list type="bullet">
/// <item>the copied length is <c>min(count*bs, source size) - skip*bs</c>: <c>count</c> limits the end of the copy in
/// the source, not its length (<c>bs=5 count=3 skip=1</c> copies 10 bytes), and DST is created that large;</item>
/// <item>a skip past the end creates an empty DST, says "SRC: cannot skip to specified offset" and still exits 0;</item>
/// <item>it prints nothing on success; a later operand of the same name wins; numbers take k, M, G, T, P, E suffixes
/// and hexadecimal.</item>
/// </list>
/// </summary>
internal static class DdCommand
{
    private const string Suffixes = "You may use k, M, G, T, P or E suffixes for";
    private const string SuffixesLine2 = "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Source format (probed if omitted)" };
        var outFormat = new Option<string>("-O") { Description = "Target format (qed, qcow2, raw)", DefaultValueFactory = _ => "raw" };
        var forceShare = ImageArgs.ForceShareOption();
        var operands = new Argument<string[]>("OPERAND") { Description = "bs=BYTES count=BLOCKS if=INPUT of=OUTPUT skip=BLOCKS", Arity = ArgumentArity.ZeroOrMore };
        var imageOpts = ImageOptsArgs.Option();
        var command = new Command("dd", "Copy an image into a new image, block by block, as dd(1)") { format, outFormat, forceShare, imageOpts, operands };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            long bs = 512, count = -1, skip = 0;
            string? input = null, output = null;
            foreach (string operand in parse.GetValue(operands) ?? [])
            {
                int eq = operand.IndexOf('=', StringComparison.Ordinal);
                string key = eq < 0 ? operand : operand[..eq], value = eq < 0 ? "" : operand[(eq + 1)..];
                switch (eq < 0 ? "" : key)
                {
                    case "bs":
                        if (!TryParseNumber(value, out bs)) return NotANumber("bs");
                        if (bs is < 1 or > int.MaxValue) throw new CommandException($"Invalid bs specified. Must be between 1 and {int.MaxValue}.");
                        break;
                    case "count":
                        if (!TryParseNumber(value, out count)) return NotANumber("count");
                        break;
                    case "skip":
                        if (!TryParseNumber(value, out skip)) return NotANumber("skip");
                        break;
                    case "if": input = value; break;
                    case "of": output = value; break;
                    default: throw new CommandException($"unrecognized operand {key}");
                }
            }
            if (input == null || output == null) throw new CommandException("Must specify both input and output files");
            if (input.Length == 0) throw new CommandException("Could not open '': The 'file' block driver requires a file name");
            string targetFormat = parse.GetValue(outFormat)!;
            if (targetFormat is not ("qed" or "raw" or "qcow2")) throw new CommandException("Unknown file format");

            // --image-opts makes if= an option string, as in qemu-img.
            var (inputPath, inputFormat) = ImageOptsArgs.Resolve(input, parse.GetValue(imageOpts), parse.GetValue(format));
            await using var source = await ImageArgs.OpenAsync(inputPath, inputFormat, readOnly: true, ct: ct, forceShare: parse.GetValue(forceShare));
            long end = source.Size;
            if (count >= 0 && count <= long.MaxValue / bs && count * bs < end) end = count * bs;
            long start = skip > long.MaxValue / bs ? long.MaxValue : skip * bs;
            long length = Math.Max(0, end - start);

            if (output.Length == 0)
                throw new CommandException(": error while creating output image: Could not create '': No such file or directory");
            // The source's read lock does not share "write": qemu-img fails to create DST over any file of the source's
            // chain, in these words, and so the source is never truncated.
            if (ConvertOperation.FindLayerInFile(source, output) is not null)
                throw new CommandException($"{output}: error while creating output image: Failed to get \"write\" lock",
                    new ImageLockedException(output, "Failed to get \"write\" lock"));
            try
            {
                // Observed: the new image's size is rounded up to whole 512-byte sectors (10 bytes make a 512-byte raw file).
                await ImageCreator.CreateAsync(targetFormat, output, (length + 511) & ~511L, OptionList.Parse([]), null, null, unsafeBacking: false, ct);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ImageFormatException or ArgumentException)
            {
                string reason = e switch
                {
                    ImageLockedException locked => locked.Reason,
                    FileNotFoundException or DirectoryNotFoundException => $"Could not create '{output}': No such file or directory",
                    UnauthorizedAccessException => $"Could not create '{output}': Permission denied",
                    _ => CliRunner.Describe(e),
                };
                throw new CommandException($"{output}: error while creating output image: {reason}", e);
            }
            if (end < start)
            {
                // Observed: qemu-img leaves the empty DST, says so, and exits 0.
                await Console.Error.WriteLineAsync($"qed: {input}: cannot skip to specified offset");
                return 0;
            }
            await using var target = await ImageArgs.OpenAsync(output, targetFormat, readOnly: false, ct: ct);
            var buffer = new byte[(int)Math.Min(bs, Math.Max(1, length))];
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(buffer.Length, length - done);
                await source.ReadAsync(start + done, buffer.AsMemory(0, n), ct);
                await target.WriteAsync(done, buffer.AsMemory(0, n), ct);
                done += n;
            }
            await target.FlushAsync(ct);
            return 0;
        });
        return command;
    }

    /// <summary>qemu-img's two lines for an operand that is not a number (each line carries the program name).</summary>
    private static int NotANumber(string operand)
    {
        Console.Error.WriteLine($"qed: Invalid {operand} specified. {Suffixes}");
        Console.Error.WriteLine($"qed: {SuffixesLine2}");
        return 1;
    }

    /// <summary>A count of bytes or blocks as qemu-img dd reads it: a size (k, M, G... suffixes) or 0x hexadecimal.</summary>
    private static bool TryParseNumber(string text, out long value)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return long.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value) && value >= 0;
        return SizeParser.TryParse(text, out value);
    }
}
