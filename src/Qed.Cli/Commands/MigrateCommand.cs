using System.CommandLine;
using Qed.Formats.Qcow2;
using Qed.Operations.Migration;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed migrate [-O qcow2|raw] [-o OPTIONS] [--flatten] [-j JOBS] [--report FILE] [--dry-run] [-p] [--salvage]
/// SOURCE... TARGET_DIR</c>: every QED image under the sources converted into TARGET_DIR, chains kept, each result
/// verified before it counts, resumable (docs/migrate.md). Exit 0 when every image migrated and verified,
/// <see cref="SomeNotMigratedExit"/> when some did not, <see cref="SalvagedExit"/> when all did but some only with
/// --salvage's losses, 1 for a command line or sources that cannot be taken (nothing written).
/// </summary>
internal static class MigrateCommand
{
    /// <summary>Some images were not migrated (corrupt and skipped, failed, or over a backing file that did not migrate).</summary>
    public const int SomeNotMigratedExit = 2;

    /// <summary>Every image migrated and verified, but some were salvaged: sectors that could not be read are zeroes.</summary>
    public const int SalvagedExit = 3;

    public static Command Build()
    {
        var outFormat = new Option<string>("-O") { Description = "Target format: qcow2 (default; keeps backing chains) or raw (always flat)", DefaultValueFactory = _ => "qcow2" };
        var options = new Option<string[]>("-o") { Description = "Target format options (qcow2: cluster_size=, compat=, lazy_refcounts=, refcount_bits=, preallocation=)" };
        var flatten = new Option<bool>("--flatten") { Description = "Make every target standalone (its whole chain's content) instead of keeping chains" };
        var jobs = new Option<int>("-j") { Description = "Images migrated at once (default: the number of cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var report = new Option<string?>("--report") { Description = $"The JSON report, also what a re-run resumes from (default TARGET_DIR/{MigrationOptions.DefaultReportName})" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the plan and write nothing" };
        var showProgress = new Option<bool>("-p") { Description = "Show progress on stderr: bytes and images overall, the current image" };
        var salvage = new Option<bool>("--salvage") { Description = "Convert corrupt images too: sectors that cannot be read become zeroes, listed in the report" };
        var paths = new Argument<string[]>("SOURCE... TARGET_DIR") { Arity = ArgumentArity.OneOrMore, Description = "QED images and folders (searched recursively), then the target folder" };
        var command = new Command("migrate", "Convert every QED image under the sources into a target folder, chains kept, each result verified; resumable")
        {
            outFormat, options, flatten, jobs, report, dryRun, showProgress, salvage, paths,
        };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string[] all = parse.GetValue(paths)!;
            if (all.Length < 2) throw new CommandException("Expecting one or more sources and a target folder");
            string format = parse.GetValue(outFormat)!;
            if (format is not ("qcow2" or "raw")) throw new CommandException($"Unsupported target format '{format}' (use qcow2 or raw)");
            int j = parse.GetValue(jobs);
            if (j < 1) throw new CommandException($"Invalid number of jobs: {j} (at least 1)");
            var migration = new MigrationOptions
            {
                TargetFormat = format == "raw" ? ImageFormat.Raw : ImageFormat.Qcow2,
                Qcow2 = Qcow2Options(format, OptionList.Parse(parse.GetValue(options) ?? [])),
                Flatten = parse.GetValue(flatten),
                Jobs = j,
                Salvage = parse.GetValue(salvage),
                ReportPath = parse.GetValue(report),
            };
            var plan = await MigrationPlan.CreateAsync(all[..^1], all[^1], migration, ct);
            if (parse.GetValue(dryRun))
            {
                PrintPlan(plan);
                return 0;
            }
            var display = parse.GetValue(showProgress) ? new MigrationProgressDisplay() : null;
            MigrationReport result;
            try
            {
                result = await plan.RunWithCountsAsync(display, ct);
            }
            finally
            {
                display?.Finish();
            }
            PrintSummary(plan, result);
            if (result.Entries.Any(e => !e.Succeeded)) return SomeNotMigratedExit;
            return result.AllVerified ? 0 : SalvagedExit;
        });
        return command;
    }

    /// <summary>
    /// The qcow2 settings from -o, by qemu-img create's names (cluster_size, compat, lazy_refcounts, refcount_bits,
    /// preallocation); raw takes only preallocation=off. Combinations are checked when the plan is made.
    /// </summary>
    private static Qcow2CreateOptions Qcow2Options(string format, OptionList opts)
    {
        var qcow2 = new Qcow2CreateOptions();
        if (format == "qcow2")
        {
            if (opts.TakeSize("cluster_size") is { } cluster) qcow2 = qcow2 with { ClusterSize = cluster <= int.MaxValue ? (int)cluster : -1 };
            if (opts.Take("compat") is { } compat)
                qcow2 = qcow2 with
                {
                    Version = compat switch
                    {
                        "1.1" or "v3" => 3,
                        "0.10" or "v2" => 2,
                        _ => throw new CommandException($"Parameter 'version' does not accept value '{compat}'"),
                    },
                };
            if (opts.Take("lazy_refcounts") is { } lazy)
                qcow2 = qcow2 with
                {
                    LazyRefcounts = lazy switch
                    {
                        "on" or "yes" or "true" or "y" => true,
                        "off" or "no" or "false" or "n" => false,
                        _ => throw new CommandException($"Parameter 'lazy_refcounts' expects 'on' or 'off'"),
                    },
                };
            if (opts.Take("refcount_bits") is { } bits)
                qcow2 = qcow2 with
                {
                    RefcountBits = int.TryParse(bits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int b)
                        ? b : throw new CommandException($"Parameter 'refcount_bits' expects a number"),
                };
            if (opts.Take("preallocation") is { } prealloc)
                qcow2 = qcow2 with
                {
                    Preallocation = prealloc switch
                    {
                        "off" => Qcow2Preallocation.Off,
                        "metadata" => Qcow2Preallocation.Metadata,
                        "falloc" => Qcow2Preallocation.Falloc,
                        "full" => Qcow2Preallocation.Full,
                        _ => throw new CommandException($"Parameter 'preallocation' does not accept value '{prealloc}'"),
                    },
                };
        }
        else if (opts.Take("preallocation") is { } prealloc && prealloc != "off")
            throw new CommandException($"Unsupported preallocation mode '{prealloc}' (only off)");
        opts.ThrowIfAnyLeft(format);
        return qcow2;
    }

    /// <summary>A path as the user would type it: relative to the current folder when inside it.</summary>
    internal static string Show(string path)
    {
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, path);
        return relative.StartsWith("..", StringComparison.Ordinal) ? path : relative;
    }

    private static void PrintPlan(MigrationPlan plan)
    {
        var o = plan.Options;
        Console.WriteLine($"Plan: {plan.Steps.Count} images into '{Show(plan.TargetDirectory)}' ({o.TargetFormat.Name()}, {(o.KeepsChains ? "chains kept" : "flattened")}, {o.Jobs} at a time)");
        foreach (var step in plan.Steps)
        {
            if (step.Problem != null)
            {
                Console.WriteLine($"  {Show(step.Source)}: not migrated: {step.Problem}");
                continue;
            }
            string detail = step.TargetFormat.Name()
                + (step.BroughtAlong ? ", brought along" : "")
                + (step.TargetBackingName is { } b ? $", backing {b} ({step.Backing!.TargetFormat.Name()})" : "");
            Console.WriteLine($"  {Show(step.Source)} -> {Show(step.Target)} ({detail})");
        }
        Console.WriteLine($"Report: {Show(plan.ReportPath)}");
    }

    private static void PrintSummary(MigrationPlan plan, MigrationReport report)
    {
        int ok = report.Entries.Count(e => e.Succeeded);
        Console.WriteLine($"Migrated {ok} of {report.Entries.Count} images into '{Show(plan.TargetDirectory)}' ({plan.Options.TargetFormat.Name()}), each verified: "
            + $"{report.Count(MigrationOutcome.Migrated)} converted, {report.Count(MigrationOutcome.UpToDate)} up to date, "
            + $"{report.Count(MigrationOutcome.Salvaged)} salvaged.");
        foreach (var e in report.Entries.Where(e => e.Outcome == MigrationOutcome.Salvaged))
            Console.WriteLine($"  {Show(e.Source)}: salvaged: {e.Salvaged.Sum(r => r.Length)} bytes in {MigrationText.Count(e.Salvaged.Count, "range")} read as zeroes"
                + (e.Error != null ? $" ({e.Error})" : ""));
        var missed = report.Entries.Where(e => !e.Succeeded).ToList();
        if (missed.Count > 0)
        {
            Console.WriteLine($"Not migrated: {missed.Count} ({report.Count(MigrationOutcome.Corrupt)} corrupt, {report.Count(MigrationOutcome.Failed)} failed, "
                + $"{report.Count(MigrationOutcome.BackingFailed)} over a backing file that did not migrate):");
            foreach (var e in missed) Console.WriteLine($"  {Show(e.Source)}: {MigrationReport.Name(e.Outcome)}: {e.Error}");
        }
        Console.WriteLine($"Report: {Show(plan.ReportPath)}");
    }
}

/// <summary>
/// -p for migrate, on stderr: qemu-img's "(x.xx/100%)" figure for the bytes of all images, then images done and the
/// current image. A line is written when the whole percent or the images done change, ending in a carriage return (a
/// terminal shows one line; padded so a shorter line covers a longer one).
/// </summary>
internal sealed class MigrationProgressDisplay : IProgress<MigrationProgress>
{
    private long _percent = -1;
    private int _images = -1;
    private int _width;

    public void Report(MigrationProgress value)
    {
        long percent = value.TotalBytes == 0 ? 100 : Math.Min(100, value.BytesDone * 100 / value.TotalBytes);
        lock (this)
        {
            if (percent <= _percent && value.ImagesDone <= _images) return;
            _percent = Math.Max(_percent, percent);
            _images = Math.Max(_images, value.ImagesDone);
            string current = value.CurrentImage is { } c && _images < value.TotalImages ? ", " + MigrateCommand.Show(c) : "";
            string line = $"    ({_percent:0.00}/100%) {_images}/{value.TotalImages} images{current}";
            Console.Error.Write(line.PadRight(_width) + "\r");
            _width = line.Length;
        }
    }

    public void Finish()
    {
        lock (this)
            if (_width > 0) Console.Error.WriteLine();
    }
}
