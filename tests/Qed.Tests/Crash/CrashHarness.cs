using Qed.Formats.Qed;
using Qed.Check;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Tests.Crash;

/// <summary>
/// Runs one random workload against a QED image on <see cref="CrashStorage"/>, then replays it crash point by crash
/// point: each state is reopened read-write (the automatic recovery repairs it: through the recovery record when the
/// state has a trusted one, and then again, on a copy of the same state, by the full check), checked, and read back
/// against the <see cref="SectorModel"/>. Guarantees asserted for each recovery: (a) what was written before the last
/// completed flush reads back exactly, (b) every other sector reads its old or a newer value, (c) the full check finds
/// no corruption.
/// </summary>
internal sealed class CrashHarness
{
    /// <summary>A workload's shape.</summary>
    public sealed record Scenario(int Seed, uint ClusterSize, uint TableSize, long Size, long BackingSize, int Ops,
        bool Concurrent, bool BreakOrdering = false, bool Defrag = false, bool RecordOmitsTables = false, bool Prefill = false)
    {
        public override string ToString() =>
            $"seed {Seed}, cluster {ClusterSize}, table {TableSize}, size {Size}, backing {BackingSize}, ops {Ops}, concurrent {Concurrent}, broken {BreakOrdering}, defrag {Defrag}, record omits tables {RecordOmitsTables}, prefill {Prefill}";
    }

    /// <summary>A guest operation of the workload and the span of storage operations it issued.</summary>
    private sealed record Step(List<SectorModel.Change> Changes, bool Flush, int Start, int End);

    public int States { get; private set; }

    /// <summary>States recovered through the recovery record (each also recovered by the full check on a copy).</summary>
    public int RecordRecoveries { get; private set; }
    public List<string> Violations { get; } = new();

    private readonly Scenario _s;
    private readonly MemoryStorage? _backing;
    private byte[]? _content;

    public CrashHarness(Scenario scenario)
    {
        _s = scenario;
        if (scenario.BackingSize > 0)
        {
            var content = new byte[scenario.BackingSize];
            SectorModel.Fill(content, SectorModel.BackingId, 0);
            _backing = new MemoryStorage(content, "backing.raw", access: FileAccess.Read);
        }
    }

    private Task<DiskImage> OpenBacking(string name, ImageFormat? format, CancellationToken ct) =>
        Task.FromResult<DiskImage>(new RawImage(_backing!, readOnly: true));

    private ImageOpenOptions Options => new() { Format = ImageFormat.Qed };

    public async Task RunAsync(double randomSubsetRate = 1.0)
    {
        var rnd = new Random(_s.Seed);
        var created = new MemoryStorage();
        await QedImage.CreateAsync(created, new QedCreateOptions
        {
            Size = _s.Size, ClusterSize = (int)_s.ClusterSize, TableSize = (int)_s.TableSize,
            BackingFile = _backing != null ? "backing.raw" : null, BackingFormat = _backing != null ? ImageFormat.Raw : null,
        });
        if (_s.Prefill)
        {
            // Every L2 table exists before the workload (one cluster in each, holding what it read, closed cleanly), so the
            // workload's entries land in tables already on disk, not only in tables it creates.
            await using var prefill = await QedImage.OpenAsync(created, Options, _backing != null ? OpenBacking : null);
            long span = (long)_s.ClusterSize * _s.TableSize * _s.ClusterSize / 8;
            var cluster = new byte[_s.ClusterSize];
            for (long at = 0; at < _s.Size; at += span)
            {
                await prefill.ReadAsync(at, cluster); // what it reads now (zeroes or the backing file's), copied up
                await prefill.WriteAsync(at, cluster);
            }
        }
        var storage = new CrashStorage(created.ToArray(), "crash.qed");
        var steps = new List<Step>();
        long sectors = _s.Size / 512;

        var tuning = new QedTuning { SkipDataFlush = _s.BreakOrdering, RecordOmitsLaterTables = _s.RecordOmitsTables };
        if (_s.Defrag) tuning = tuning with { DefragBatchBytes = 16 << 10 }; // many batches, interleaved with the step's writes
        var image = await QedImage.OpenAsync(storage, Options, _backing != null ? OpenBacking : null, tuning);
        long nextId = 1;
        for (int i = 0; i < _s.Ops; i++)
        {
            int start = storage.Position;
            int roll = rnd.Next(100);
            if (roll < 14)
            {
                await image.FlushAsync();
                steps.Add(new Step([], true, start, storage.Position));
                continue;
            }
            int parallel = _s.Concurrent && roll < 45 ? rnd.Next(2, 5) : 1;
            var changes = new List<SectorModel.Change>();
            var tasks = new List<Task>();
            var taken = new List<(long, long)>();
            for (int p = 0; p < parallel; p++)
            {
                var change = RandomChange(rnd, sectors, ref nextId);
                // Requests in flight together touch different sectors (they may share clusters), so the outcome
                // without a crash does not depend on their order.
                if (taken.Any(t => change.FirstSector < t.Item2 && t.Item1 < change.FirstSector + change.Count)) continue;
                taken.Add((change.FirstSector, change.FirstSector + change.Count));
                changes.Add(change);
                tasks.Add(Issue(image, change));
            }
            // Defragment alongside the step's writes: it changes no content, so the model needs nothing new.
            if (_s.Defrag && rnd.Next(3) == 0) tasks.Add(Task.Run(() => image.DefragmentAsync()));
            await Task.WhenAll(tasks);
            steps.Add(new Step(changes, false, start, storage.Position));
        }
        int closeStart = storage.Position;
        await image.DisposeAsync();
        steps.Add(new Step([], true, closeStart, storage.Position));

        // Replay: the model follows the steps; each crash point inside a step may keep that step's changes or not.
        var model = new SectorModel(sectors, s => _backing != null && s * 512 < _s.BackingSize ? SectorModel.BackingId : 0);
        var fateRandom = new Random(_s.Seed * 7919 + 1);
        await VerifyAsync(storage, 0, model, fateRandom, randomSubsetRate);
        foreach (var step in steps)
        {
            foreach (var c in step.Changes) model.Begin(c);
            for (int k = step.Start + 1; k < step.End; k++)
                await VerifyAsync(storage, k, model, fateRandom, randomSubsetRate);
            foreach (var c in step.Changes) model.End(c);
            if (step.Flush) model.Flushed();
            if (step.End > step.Start) await VerifyAsync(storage, step.End, model, fateRandom, randomSubsetRate);
            if (Violations.Count > 20) return;
        }
    }

    private SectorModel.Change RandomChange(Random rnd, long sectors, ref long nextId)
    {
        long clusterSectors = _s.ClusterSize / 512;
        long first, count;
        if (rnd.Next(4) == 0)
        {
            // Whole clusters: the zero-cluster and multi-cluster allocation paths.
            long clusters = sectors / clusterSectors;
            first = rnd.NextInt64(clusters) * clusterSectors;
            count = rnd.NextInt64(1, 4) * clusterSectors;
        }
        else
        {
            first = rnd.NextInt64(sectors);
            count = rnd.NextInt64(1, clusterSectors * 2 + 2);
        }
        count = Math.Min(count, sectors - first);
        int kind = rnd.Next(100);
        if (kind < 72) return new SectorModel.Change(first, count, nextId++, false);
        if (kind < 88) return new SectorModel.Change(first, count, 0, false);
        return new SectorModel.Change(first, count, 0, true);
    }

    private static async Task Issue(QedImage image, SectorModel.Change c)
    {
        await Task.Yield();
        if (c.Discard)
        {
            await image.DiscardAsync(c.FirstSector * 512, c.Count * 512);
        }
        else if (c.Id == 0)
        {
            await image.WriteZeroesAsync(c.FirstSector * 512, c.Count * 512);
        }
        else
        {
            var data = new byte[c.Count * 512];
            SectorModel.Fill(data, c.Id, c.FirstSector);
            await image.WriteAsync(c.FirstSector * 512, data);
        }
    }

    /// <summary>Checks the state with every unflushed operation kept, and (at the given rate) one random subset, torn writes included.</summary>
    private async Task VerifyAsync(CrashStorage storage, int k, SectorModel model, Random rnd, double randomSubsetRate)
    {
        await VerifyStateAsync(storage.Materialize(k, (_, _) => CrashStorage.Fate.Keep, rnd), k, "all unflushed kept", model);
        if (rnd.NextDouble() < randomSubsetRate && storage.DurablePrefix(k) < k)
        {
            int seed = rnd.Next();
            var pick = new Random(seed);
            var bytes = storage.Materialize(k, (_, _) => pick.Next(10) switch
            {
                < 5 => CrashStorage.Fate.Keep,
                < 8 => CrashStorage.Fate.Drop,
                _ => CrashStorage.Fate.Tear,
            }, pick);
            await VerifyStateAsync(bytes, k, $"random subset (seed {seed})", model);
        }
        // The file's unflushed growth lost, everything else kept: entries written in place ahead of data that never
        // reached the file point past its end, which is what recovery must repair.
        if (storage.MaterializeWithoutGrowth(k, rnd) is { } shrunk)
            await VerifyStateAsync(shrunk, k, "growth lost", model);
    }

    private async Task VerifyStateAsync(MemoryStorage file, int k, string how, SectorModel model)
    {
        States++;
        var copy = file.ToArray();
        var path = await VerifyRecoveryAsync(file, $"[{_s}] crash point {k} ({how})", model, QedTuning.Default);
        if (path != RecoveryPath.Record) return;
        RecordRecoveries++;
        await VerifyRecoveryAsync(new MemoryStorage(copy, file.Name), $"[{_s}] crash point {k} ({how}, full check)", model,
            new QedTuning { NoRecoveryRecord = true });
    }

    private async Task<RecoveryPath> VerifyRecoveryAsync(MemoryStorage file, string where, SectorModel model, QedTuning tuning)
    {
        try
        {
            await using var image = await QedImage.OpenAsync(file, Options, _backing != null ? OpenBacking : null, tuning);
            var check = await QedChecker.CheckAsync(file, CheckRepair.None);
            if (check.Corruptions != 0 || check.CheckErrors != 0)
                Violations.Add($"{where}: after reopen ({image.Recovery}) the check finds {check.Corruptions} corruption(s), {check.CheckErrors} error(s): {string.Join("; ", check.Messages)}");
            var content = _content ??= new byte[_s.Size];
            await image.ReadAsync(0, content);
            for (long s = 0; s < model.Sectors; s++)
            {
                long id = SectorModel.Identify(content.AsSpan((int)(s * 512), 512), s);
                if (!model.Allowed(s, id))
                {
                    Violations.Add($"{where}: sector {s} reads {(id == SectorModel.Garbage ? "garbage" : id.ToString())}, allowed {model.Describe(s)}");
                    break;
                }
            }
            return image.Recovery;
        }
        catch (Exception e)
        {
            Violations.Add($"{where}: {e.GetType().Name}: {e.Message}");
            return RecoveryPath.None;
        }
    }
}
