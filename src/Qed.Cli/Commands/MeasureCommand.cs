using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed measure [--output=human|json] [-O fmt] [-o opts] [--size N | [-f fmt] FILE]</c>, as qemu-img measure, and
/// for QED too (which QEMU cannot measure).
/// </summary>
internal static class MeasureCommand
{
    public static Command Build()
    {
        var output = OutputOption.Create();
        var outFormat = new Option<string>("-O") { Description = "Target format (qed, qcow2, raw)", DefaultValueFactory = _ => "raw" };
        var options = new Option<string[]>("-o") { Description = "Target options: cluster_size=, table_size= (qed), compat= (qcow2)" };
        var size = new Option<string?>("--size") { Description = "Measure a new image of this size" };
        var format = new Option<string?>("-f") { Description = "Format of FILE (probed if omitted)" };
        var forceShare = ImageArgs.ForceShareOption();
        var imageOpts = ImageOptsArgs.Option();
        var file = new Argument<string?>("FILE") { Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("measure", "Compute the file size an image needs in a format") { output, outFormat, options, size, format, forceShare, imageOpts, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string target = parse.GetValue(outFormat)!;
            var opts = OptionList.Parse(parse.GetValue(options) ?? []);
            // An unknown format is refused where the measurement would start, after the other arguments (as ever).
            bool knownFormat = ImageFormatNames.TryParse(target, out var targetFormat);
            var measure = new MeasureOptions
            {
                Format = targetFormat,
                // Beyond int, no format takes it: the refusal names the largest int rather than wrapping round.
                ClusterSize = target == "raw" ? 65536 : (int)Math.Clamp(opts.TakeSize("cluster_size") ?? 65536, int.MinValue, int.MaxValue),
                TableSize = target == "qed" ? (int)(opts.TakeSize("table_size") ?? 4) : 4,
            };
            if (target == "qcow2" && opts.Take("compat") is { } compat && compat is not ("0.10" or "1.1" or "v2" or "v3"))
                throw new CommandException($"Invalid compatibility level: '{compat}' (use 0.10 or 1.1)");
            opts.ThrowIfAnyLeft(target);
            string? sizeText = parse.GetValue(size), path = parse.GetValue(file);
            if ((sizeText is null) == (path is null)) throw new CommandException("Either --size N or one filename must be specified.");
            SizeMeasurement result;
            if (sizeText != null)
            {
                if (!SizeParser.TryParse(sizeText, out long bytes)) throw new CommandException($"Invalid image size specified: '{sizeText}'");
                ThrowIfUnknown(knownFormat, target);
                result = MeasureOperation.ForSize(bytes, measure);
            }
            else
            {
                var (open, fmt) = ImageOptsArgs.Resolve(path!, parse.GetValue(imageOpts), parse.GetValue(format));
                await using var image = await ImageArgs.OpenAsync(open, fmt, readOnly: true, ct: ct, forceShare: parse.GetValue(forceShare));
                ThrowIfUnknown(knownFormat, target);
                result = await MeasureOperation.ForImageAsync(image, measure, ct);
            }
            if (OutputOption.IsJson(parse, output))
                Console.WriteLine($"{{\n    \"required\": {JsonText.Number(result.Required)},\n    \"fully-allocated\": {JsonText.Number(result.FullyAllocated)}\n}}");
            else
                Console.WriteLine($"required size: {result.Required}\nfully allocated size: {result.FullyAllocated}");
            return 0;
        });
        return command;
    }

    private static void ThrowIfUnknown(bool known, string format)
    {
        if (!known) throw new NotSupportedException($"Unknown or unsupported target format '{format}' (known: qed, qcow2, raw)");
    }
}
