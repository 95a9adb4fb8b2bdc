using System.CommandLine;
using System.Globalization;
using System.Text;
using Qed.Check;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed check [-f fmt] [-r leaks|all] [--output=human|json] [-q] FILE</c>: qemu-img check's output, JSON keys and
/// exit codes (0 clean, 1 check errors, 2 corruptions, 3 leaks only, 63 format without checks). What was found and
/// repaired, problem by problem, goes to stderr, as qemu-img does for qcow2, so stdout stays what scripts parse.
/// </summary>
internal static class CheckCommand
{
    /// <summary>qemu-img's exit status for a format that has no consistency check.</summary>
    private const int NotSupportedExit = 63;

    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (qed, qcow2, raw); probed when omitted" };
        var repair = new Option<string?>("-r") { Description = "Repair: 'leaks' reclaims leaked clusters at the end of the file; 'all' also repairs corruptions" };
        var output = new Option<string>("--output") { Description = "Output format: human or json", DefaultValueFactory = _ => "human" };
        var quiet = new Option<bool>("-q") { Description = "Quiet: print nothing, only set the exit status" };
        var forceShare = ImageArgs.ForceShareOption();
        var imageOpts = ImageOptsArgs.Option();
        var file = new Argument<string>("FILE");
        var command = new Command("check", "Check an image for consistency, and optionally repair it") { format, repair, output, quiet, forceShare, imageOpts, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var (path, fmt) = ImageOptsArgs.Resolve(parse.GetValue(file)!, parse.GetValue(imageOpts), parse.GetValue(format));
            var mode = parse.GetValue(repair) switch
            {
                null => CheckRepair.None,
                "leaks" => CheckRepair.Leaks,
                "all" => CheckRepair.All,
                var other => throw new ArgumentException($"Unknown option value for -r (expecting 'leaks' or 'all'): {other}"),
            };
            string outputFormat = parse.GetValue(output)!;
            if (outputFormat is not ("human" or "json"))
                throw new ArgumentException("--output must be used with human or json as argument.");
            bool json = outputFormat == "json", silent = parse.GetValue(quiet);

            ImageArgs.CheckForceShare(path, mode == CheckRepair.None, parse.GetValue(forceShare));
            var result = parse.GetValue(forceShare)
                ? await CheckSharedAsync(path, fmt, ct)
                : await QedChecker.CheckFileAsync(path, fmt, mode, null, ct);
            if (result is null)
            {
                Console.Error.WriteLine($"{CliRunner.ProgramName}: This image format does not support checks");
                return NotSupportedExit;
            }
            if (result.Failure != null)
            {
                // qemu-img prints the problems found and why the check stopped, and no summary.
                if (!silent) foreach (string message in result.Messages) Console.Error.WriteLine(message);
                Console.Error.WriteLine($"{CliRunner.ProgramName}: Check failed: {result.Failure}");
                return 1;
            }
            if (!silent)
            {
                foreach (string message in result.Messages) Console.Error.WriteLine(message);
                Console.Out.Write(json ? Json(result, parse.GetValue(file)!) : Human(result, mode != CheckRepair.None));
            }
            return ExitCode(result);
        });
        return command;
    }

    /// <summary>A read-only check beside a writer (-U): the file is opened sharing everything, as qemu-img check -U.</summary>
    private static async Task<ImageCheckResult?> CheckSharedAsync(string path, string? format, CancellationToken ct)
    {
        Storage.FileStorage file;
        try
        {
            file = Storage.FileStorage.Open(path, writable: false, locking: Storage.FileLockMode.ForceShare);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CommandException($"Could not open '{path}': No such file or directory", e);
        }
        await using (file)
        {
            format ??= (await DiskImage.ProbeFormatAsync(file, ct)).Name();
            return format switch
            {
                "qed" => await QedChecker.CheckAsync(file, CheckRepair.None, null, ct),
                "qcow2" => await Qcow2Checker.CheckAsync(file, CheckRepair.None, null, ct),
                "raw" => null,
                _ => throw new NotSupportedException($"Unknown image format '{format}' (known: qed, qcow2, raw)"),
            };
        }
    }

    /// <summary>qemu-img's precedence: check errors, then corruptions, then leaks.</summary>
    internal static int ExitCode(ImageCheckResult r) =>
        r.CheckErrors > 0 ? 1 : r.Corruptions > 0 ? 2 : r.Leaks > 0 ? 3 : 0;

    /// <summary>qemu-img's text, including the repair summary before the double check.</summary>
    internal static string Human(ImageCheckResult r, bool repairing)
    {
        var text = new StringBuilder();
        if (repairing && (r.CorruptionsFixed > 0 || r.LeaksFixed > 0))
        {
            text.Append("The following inconsistencies were found and repaired:\n\n");
            text.Append(CultureInfo.InvariantCulture, $"    {r.LeaksFixed} leaked clusters\n    {r.CorruptionsFixed} corruptions\n\n");
            text.Append("Double checking the fixed image now...\n");
        }
        if (r.Corruptions == 0 && r.Leaks == 0 && r.CheckErrors == 0)
        {
            text.Append("No errors were found on the image.\n");
        }
        else
        {
            if (r.Corruptions > 0)
                text.Append(CultureInfo.InvariantCulture, $"\n{r.Corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n");
            if (r.Leaks > 0)
                text.Append(CultureInfo.InvariantCulture, $"\n{r.Leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n");
            if (r.CheckErrors > 0)
                text.Append(CultureInfo.InvariantCulture, $"\n{r.CheckErrors} internal errors have occurred during the check.\n");
        }
        if (r.TotalClusters != 0 && r.AllocatedClusters != 0)
            text.Append(CultureInfo.InvariantCulture,
                $"{r.AllocatedClusters}/{r.TotalClusters} = {r.AllocatedClusters * 100.0 / r.TotalClusters:F2}% allocated, {r.FragmentedClusters * 100.0 / r.AllocatedClusters:F2}% fragmented, {r.CompressedClusters * 100.0 / r.AllocatedClusters:F2}% compressed clusters\n");
        if (r.ImageEndOffset != 0)
            text.Append(CultureInfo.InvariantCulture, $"Image end offset: {r.ImageEndOffset}\n");
        return text.ToString();
    }

    /// <summary>
    /// qemu-img's JSON: four-space indent, keys in its (hash) order, zero counters omitted except check-errors
    /// (image-end-offset and compressed-clusters come first, as qemu-img prints them for qcow2).
    /// </summary>
    internal static string Json(ImageCheckResult r, string filename)
    {
        var fields = new List<string>();
        void Count(string key, long value, bool always = false)
        {
            if (value != 0 || always) fields.Add($"\"{key}\": {value.ToString(CultureInfo.InvariantCulture)}");
        }
        Count("image-end-offset", r.ImageEndOffset);
        Count("compressed-clusters", r.CompressedClusters);
        Count("total-clusters", r.TotalClusters);
        Count("corruptions", r.Corruptions);
        Count("corruptions-fixed", r.CorruptionsFixed);
        Count("check-errors", r.CheckErrors, always: true);
        Count("leaks", r.Leaks);
        Count("leaks-fixed", r.LeaksFixed);
        Count("allocated-clusters", r.AllocatedClusters);
        fields.Add($"\"filename\": {JsonString(filename)}");
        fields.Add($"\"format\": {JsonString(r.Format.Name())}");
        Count("fragmented-clusters", r.FragmentedClusters);
        return "{\n    " + string.Join(",\n    ", fields) + "\n}\n";
    }

    /// <summary>A JSON string as qemu writes it: quotes, backslashes and control characters escaped, and every
    /// character outside ASCII as \uXXXX (upper-case hex).</summary>
    internal static string JsonString(string s)
    {
        var text = new StringBuilder("\"");
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c < 0x20 || c >= 0x7f) text.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:X4}");
                    else text.Append(c);
                    break;
            }
        }
        return text.Append('"').ToString();
    }
}
