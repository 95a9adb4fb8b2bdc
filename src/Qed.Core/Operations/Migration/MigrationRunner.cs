using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qed.Check;
using Qed.Formats.Qcow2;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Operations.Migration;

/// <summary>
/// Runs a <see cref="MigrationPlan"/>. Each image: the source chain is opened read-only (never repaired, never
/// written), checked in memory when it is QED, converted into a temporary name beside its target, verified, and only
/// then renamed into place; the report is rewritten (atomically) after every image. A run cut off at any point leaves
/// final names holding only verified results, and a re-run skips what the report shows verified and unchanged.
/// </summary>
internal sealed class MigrationRunner
{
    private readonly MigrationPlan _plan;
    private readonly IProgress<MigrationProgress>? _progress;
    private readonly Dictionary<MigrationStep, Task<MigrationEntry>> _tasks = new();
    private readonly Dictionary<MigrationStep, MigrationEntry> _done = new();
    private readonly Dictionary<string, MigrationEntry> _previous = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _jobs;
    private readonly SemaphoreSlim _reportLock = new(1, 1);
    private readonly long _totalBytes;
    private long _bytesDone;
    private int _imagesDone;
    private string? _current;

    private MigrationRunner(MigrationPlan plan, IProgress<MigrationProgress>? progress, MigrationReport? previous)
    {
        _plan = plan;
        _progress = progress;
        _jobs = new SemaphoreSlim(plan.Options.Jobs, plan.Options.Jobs);
        if (previous != null)
            foreach (var entry in previous.Entries) _previous[entry.Target] = entry;
        _totalBytes = plan.Steps.Sum(s => s.VirtualSize);
    }

    /// <summary>The name a target is written under until verified: hidden, beside the final name (so relative backing names resolve the same).</summary>
    public static string TemporaryName(string target) =>
        Path.Combine(Path.GetDirectoryName(target)!, "." + Path.GetFileName(target) + ".qed-migrate-tmp");

    public static async Task<MigrationReport> RunAsync(MigrationPlan plan, IProgress<MigrationProgress>? progress, CancellationToken ct)
    {
        var runner = new MigrationRunner(plan, progress, MigrationReport.TryRead(plan.ReportPath));
        Directory.CreateDirectory(plan.TargetDirectory);
        runner.Report(null);
        foreach (var step in plan.Steps)
        {
            var below = step.Backing is null ? null : runner._tasks[step.Backing];
            runner._tasks[step] = runner.RunStepAsync(step, below, ct);
        }
        try
        {
            await Task.WhenAll(runner._tasks.Values).ConfigureAwait(false);
        }
        finally
        {
            await runner.WriteReportAsync().ConfigureAwait(false);
        }
        return runner.BuildReport();
    }

    private MigrationReport BuildReport()
    {
        var entries = new List<MigrationEntry>();
        lock (_done)
            foreach (var step in _plan.Steps)
                if (_done.TryGetValue(step, out var entry) || _previous.TryGetValue(step.Target, out entry)) entries.Add(entry);
        return new MigrationReport(_plan.TargetDirectory, _plan.Options.TargetFormat.Name(), _plan.Options.Flatten, entries);
    }

    private async Task WriteReportAsync()
    {
        await _reportLock.WaitAsync().ConfigureAwait(false);
        try
        {
            string? folder = Path.GetDirectoryName(_plan.ReportPath);
            if (folder != null) Directory.CreateDirectory(folder);
            await BuildReport().WriteAsync(_plan.ReportPath).ConfigureAwait(false);
        }
        finally
        {
            _reportLock.Release();
        }
    }

    private void Report(string? current)
    {
        if (current != null) Volatile.Write(ref _current, current);
        _progress?.Report(new MigrationProgress(Interlocked.Read(ref _bytesDone), _totalBytes, Volatile.Read(ref _imagesDone),
            _plan.Steps.Count, Volatile.Read(ref _current)));
    }

    private MigrationEntry Entry(MigrationStep step, MigrationOutcome outcome, string? error) => new()
    {
        Source = step.Source,
        SourceFormat = step.SourceFormat.Name(),
        Chain = step.SourceChain,
        Target = step.Target,
        TargetFormat = step.TargetFormat.Name(),
        TargetBacking = step.TargetBackingName,
        Outcome = outcome,
        Error = error,
    };

    private async Task<MigrationEntry> RunStepAsync(MigrationStep step, Task<MigrationEntry>? below, CancellationToken ct)
    {
        await Task.Yield();
        var counted = new StrongBox<long>();
        MigrationEntry entry;
        if (step.Problem != null) entry = Entry(step, step.Corrupt ? MigrationOutcome.Corrupt : MigrationOutcome.Failed, step.Problem);
        else
        {
            var backing = below is null ? null : await below.ConfigureAwait(false);
            if (backing is { Succeeded: false })
                entry = Entry(step, MigrationOutcome.BackingFailed, $"its backing file '{backing.Source}' did not migrate ({MigrationReport.Name(backing.Outcome)})");
            else
            {
                await _jobs.WaitAsync(ct).ConfigureAwait(false);
                try
                {
                    Report(step.Source);
                    entry = await MigrateAsync(step, backing, counted, ct).ConfigureAwait(false);
                }
                finally
                {
                    _jobs.Release();
                }
            }
        }
        lock (_done) _done[step] = entry;
        Interlocked.Increment(ref _imagesDone);
        // A copy counted its bytes as it went; the rest of the image (all of it when nothing was copied) counts now.
        Interlocked.Add(ref _bytesDone, Math.Max(0, step.VirtualSize - Interlocked.Read(ref counted.Value)));
        Report(null);
        await WriteReportAsync().ConfigureAwait(false);
        return entry;
    }

    /// <summary>One image: up to date, adopted, or converted and verified; never throws but for cancellation.</summary>
    private async Task<MigrationEntry> MigrateAsync(MigrationStep step, MigrationEntry? backing, StrongBox<long> counted, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        _previous.TryGetValue(step.Target, out var previous);
        bool recorded = previous != null && previous.Source == step.Source && previous.TargetFormat == step.TargetFormat.Name()
            && previous.TargetBacking == step.TargetBackingName;
        string temp = TemporaryName(step.Target);
        try
        {
            // Up to date: verified before, source unchanged (size, time, checksum), target as it was left, and the
            // backing target (if any) the file it was made over (a re-made backing file means the overlay must be re-made).
            if (recorded && previous!.Succeeded && File.Exists(step.Target)
                && (step.Backing is null || backing is { Succeeded: true } && File.Exists(step.Backing.Target)
                    && SourceFingerprint.Stat(step.Backing.Target).SameStat(previous.BackingFingerprint))
                && SourceFingerprint.Stat(step.Source).SameStat(previous.SourceFingerprint)
                && SourceFingerprint.Stat(step.Target).SameStat(previous.TargetFingerprint))
            {
                var now = await SourceFingerprint.ComputeAsync(step.Source, ct).ConfigureAwait(false);
                if (now.Sha256 == previous.SourceFingerprint!.Sha256)
                    // A salvaged result stays one: its losses are still in the target.
                    return previous with { Outcome = previous.Outcome == MigrationOutcome.Salvaged ? MigrationOutcome.Salvaged : MigrationOutcome.UpToDate };
            }
            // A file under the final name that this migration did not record is not ours to replace.
            bool existing = File.Exists(step.Target) || new FileInfo(step.Target).LinkTarget != null;
            if (existing && !recorded) return await AdoptAsync(step, clock, ct).ConfigureAwait(false);
            return await ConvertAsync(step, temp, clock, counted, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            FileStorage.TryDelete(temp);
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            FileStorage.TryDelete(temp);
            return Entry(step, e is ImageFormatException ? MigrationOutcome.Corrupt : MigrationOutcome.Failed, Describe(e)) with
            {
                Seconds = clock.Elapsed.TotalSeconds,
            };
        }
    }

    private static string Describe(Exception e)
    {
        while (e is AggregateException { InnerException: { } inner }) e = inner;
        return e.Message.ReplaceLineEndings(" ");
    }

    /// <summary>
    /// A target already under its final name but not in the report: a run cut off between the rename and the report
    /// write leaves that. Kept (nothing rewritten) if it verifies against the source; else left alone and reported.
    /// </summary>
    private async Task<MigrationEntry> AdoptAsync(MigrationStep step, Stopwatch clock, CancellationToken ct)
    {
        await using var source = await OpenSourceAsync(step, ct).ConfigureAwait(false);
        var fingerprint = await SourceFingerprint.ComputeAsync(step.Source, ct).ConfigureAwait(false);
        MigrationVerifier.Verdict verdict;
        try
        {
            verdict = await MigrationVerifier.VerifyAsync(source, step.Target, step.TargetFormat.Name(), salvaging: false, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or ArgumentException)
        {
            verdict = new MigrationVerifier.Verdict(e.Message, null);
        }
        if (verdict.Problem != null)
            return Entry(step, MigrationOutcome.Failed, $"'{step.Target}' already exists and is not a verified copy of the source ({verdict.Problem}); it is left alone")
                with { Seconds = clock.Elapsed.TotalSeconds };
        return Entry(step, MigrationOutcome.Migrated, null) with
        {
            Verified = true, Check = verdict.Check, VirtualSize = source.Size, SourceFingerprint = fingerprint,
            TargetFingerprint = SourceFingerprint.Stat(step.Target), Seconds = clock.Elapsed.TotalSeconds,
            BackingFingerprint = step.Backing is null ? null : SourceFingerprint.Stat(step.Backing.Target),
        };
    }

    private Task<DiskImage> OpenSourceAsync(MigrationStep step, CancellationToken ct) =>
        DiskImage.OpenAsync(step.Source, new ImageOpenOptions { Format = step.SourceFormat, ReadOnly = true }, ct);

    private async Task<MigrationEntry> ConvertAsync(MigrationStep step, string temp, Stopwatch clock, StrongBox<long> counted, CancellationToken ct)
    {
        var options = _plan.Options;
        // The source chain read-only: a dirty QED image is read as it is (a read-only open never repairs), and the
        // shared lock keeps writers out while it is read, so the checksum taken now is of what is converted.
        DiskImage opened = await OpenSourceAsync(step, ct).ConfigureAwait(false);
        await using var source = options.Salvage ? new SalvagingImage(opened) : opened;
        bool dirty = opened is Formats.Qed.QedImage { IsDirty: true };
        string? note = null;
        if (step.SourceFormat == ImageFormat.Qed)
        {
            // The check in memory: read-only, no repair. Leaks (what a crash leaves) do not matter to the guest content.
            using var file = FileStorage.Open(step.Source, writable: false, locking: FileLockMode.None);
            var found = await QedChecker.CheckAsync(file, CheckRepair.None, null, ct).ConfigureAwait(false);
            if (found.Corruptions != 0 || found.CheckErrors != 0)
            {
                string what = $"its check found {MigrationText.Count(found.Corruptions, "corruption")} and {MigrationText.Count(found.CheckErrors, "check error")}"
                    + (found.Messages.Count > 0 ? $" ({found.Messages[0]})" : "");
                if (!options.Salvage) return Entry(step, MigrationOutcome.Corrupt, what + "; use --salvage to convert what can be read") with { SourceDirty = dirty };
                note = what;
            }
        }
        var fingerprint = await SourceFingerprint.ComputeAsync(step.Source, ct).ConfigureAwait(false);

        Directory.CreateDirectory(Path.GetDirectoryName(temp)!);
        FileStorage.TryDelete(temp); // a leftover of a run cut off: ours by its name
        await CreateTargetAsync(step, temp, source, ct).ConfigureAwait(false);

        var salvaged = new SortedDictionary<long, string>();
        void Salvaged(long at, IOException e)
        {
            lock (salvaged) salvaged.TryAdd(at, e.Message);
        }
        long copied = 0; // of this copy; a copy that is retried starts again
        var relay = new Relay(p =>
        {
            // Reports arrive from several copy tasks at once: only growth counts.
            long seen = Interlocked.Read(ref copied);
            while (p.BytesDone > seen)
            {
                long was = Interlocked.CompareExchange(ref copied, p.BytesDone, seen);
                if (was == seen)
                {
                    Interlocked.Add(ref _bytesDone, p.BytesDone - seen);
                    Interlocked.Add(ref counted.Value, p.BytesDone - seen);
                    Report(step.Source);
                    return;
                }
                seen = was;
            }
        });
        await using (var target = await DiskImage.OpenAsync(temp, new ImageOpenOptions { Format = step.TargetFormat }, ct).ConfigureAwait(false))
        {
            var copy = new ConvertOptions
            {
                TargetIsZeroed = step.Backing is null,
                OnReadError = options.Salvage ? Salvaged : null,
                OnBlockStatusError = options.Salvage ? Salvaged : null,
            };
            await ConvertOperation.CopyAsync(source, target, copy, relay, ct).ConfigureAwait(false);
        }
        var verdict = await MigrationVerifier.VerifyAsync(source, temp, step.TargetFormat.Name(), options.Salvage, ct).ConfigureAwait(false);
        if (verdict.Problem != null)
        {
            FileStorage.TryDelete(temp);
            return Entry(step, MigrationOutcome.Failed, "verification failed: " + verdict.Problem) with
            {
                Check = verdict.Check, SourceDirty = dirty, Seconds = clock.Elapsed.TotalSeconds,
            };
        }
        File.Move(temp, step.Target, overwrite: true);
        var ranges = Ranges(salvaged);
        bool lossy = ranges.Count > 0 || note != null;
        return Entry(step, lossy ? MigrationOutcome.Salvaged : MigrationOutcome.Migrated, note) with
        {
            Verified = true, Check = verdict.Check, VirtualSize = source.Size, SourceDirty = dirty, SourceFingerprint = fingerprint,
            TargetFingerprint = SourceFingerprint.Stat(step.Target), Seconds = clock.Elapsed.TotalSeconds, Salvaged = ranges,
            BackingFingerprint = step.Backing is null ? null : SourceFingerprint.Stat(step.Backing.Target),
        };
    }

    /// <summary>Progress reports handed on as they come (Progress&lt;T&gt; would post them to the thread pool, late).</summary>
    private sealed class Relay(Action<ImageProgress> report) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value) => report(value);
    }

    private async Task CreateTargetAsync(MigrationStep step, string temp, DiskImage source, CancellationToken ct)
    {
        switch (step.TargetFormat)
        {
            case ImageFormat.Qcow2:
                var qcow2 = _plan.Options.Qcow2 with
                {
                    Size = source.Size,
                    BackingFile = step.TargetBackingName,
                    BackingFormat = step.Backing?.TargetFormat,
                    BackingCheck = BackingFileCheck.Open,
                };
                // A qcow2 file brought along keeps its cluster size.
                if (step.BroughtAlong) qcow2 = qcow2 with { ClusterSize = source.ClusterSize };
                await Qcow2Image.CreateAsync(temp, qcow2, ct).ConfigureAwait(false);
                break;
            case ImageFormat.Raw:
                await RawImage.CreateAsync(temp, source.Size, ct).ConfigureAwait(false);
                break;
            default:
                throw new NotSupportedException($"Unsupported target format {step.TargetFormat}");
        }
    }

    /// <summary>Salvaged sectors merged into runs.</summary>
    private static List<SalvagedRange> Ranges(SortedDictionary<long, string> sectors)
    {
        var ranges = new List<SalvagedRange>();
        foreach (var (at, error) in sectors)
        {
            if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == at)
                ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + 512 };
            else ranges.Add(new SalvagedRange(at, 512, error));
        }
        return ranges;
    }
}
