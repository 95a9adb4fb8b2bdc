using System.Diagnostics;
using Xunit.Abstractions;

namespace Qed.Tests.Crash;

/// <summary>
/// The crash-consistency test: random workloads crashed at every storage operation and with random subsets of
/// unflushed writes (torn at 512 bytes), each state reopened, repaired, checked and read against the model.
/// QED_CRASH_WORKLOADS sets how many workloads run (default 60, about 13,000 crash states).
/// </summary>
public class CrashConsistencyTests(ITestOutputHelper output)
{
    private static readonly (uint Cluster, uint Table, long Size)[] Geometries =
    [
        (4096, 2, 6L << 20),   // two L2 tables, small clusters
        (4096, 4, 3L << 20),
        (65536, 2, 4L << 20),  // default-sized clusters
        (8192, 16, 2L << 20),  // large tables
    ];

    internal static CrashHarness.Scenario Scenario(int seed, bool breakOrdering = false)
    {
        var g = Geometries[seed % Geometries.Length];
        long backing = breakOrdering ? g.Size : ((seed / Geometries.Length) % 3) switch { 0 => 0, 1 => g.Size, _ => g.Size / 2 + 512 * 3 };
        bool concurrent = (seed / 12) % 2 == 1 || breakOrdering;
        return new CrashHarness.Scenario(seed, g.Cluster, g.Table, g.Size, backing, Ops: 36, concurrent, breakOrdering);
    }

    [Fact]
    public async Task EveryCrashStateKeepsFlushedDataAndReadsOldOrNew()
    {
        int workloads = int.TryParse(Environment.GetEnvironmentVariable("QED_CRASH_WORKLOADS"), out int n) ? n : 72;
        var clock = Stopwatch.StartNew();
        int states = 0, concurrentStates = 0, backingStates = 0, recordStates = 0;
        var violations = new List<string>();
        var gate = new Lock();
        // Workloads are independent: run them on every core.
        await Parallel.ForEachAsync(Enumerable.Range(0, workloads), new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            async (seed, _) =>
            {
                // Every fifth workload starts with every table on disk, so its entries land in tables it did not create.
                var scenario = Scenario(seed) with { Prefill = seed % 5 == 4 };
                var harness = new CrashHarness(scenario);
                await harness.RunAsync();
                lock (gate)
                {
                    states += harness.States;
                    recordStates += harness.RecordRecoveries;
                    if (scenario.Concurrent) concurrentStates += harness.States;
                    if (scenario.BackingSize > 0) backingStates += harness.States;
                    violations.AddRange(harness.Violations);
                }
            });
        string summary = $"crash states tried: {states} ({concurrentStates} from concurrent workloads, {backingStates} with a backing file, {recordStates} recovered through the recovery record and again by the full check) in {workloads} workloads, {clock.Elapsed.TotalSeconds:F1} s; violations: {violations.Count}";
        output.WriteLine(summary);
        Console.WriteLine(summary);
        Assert.True(violations.Count == 0, summary + "\n" + string.Join("\n", violations.Take(20)));
        Assert.True(states >= 10_000 || workloads < 72, summary);
        // Every workload without a backing file sets NEED_CHECK, so a good share of states recover through the record.
        Assert.True(recordStates >= states / 10, summary);
    }

    /// <summary>
    /// The referee catches a wrong recovery record: with only each epoch's first table recorded, recovery through the
    /// record leaves entries past the end of the file in the tables it missed.
    /// </summary>
    [Fact]
    public async Task ARecordThatMissesATableIsCaught()
    {
        int states = 0;
        var violations = new List<string>();
        for (int seed = 0; seed < 48 && violations.Count == 0; seed++)
        {
            var s = Scenario(seed);
            if (s.BackingSize != 0 || s.Size <= (long)s.ClusterSize * s.TableSize * s.ClusterSize / 8) continue; // one table: nothing to miss
            var harness = new CrashHarness(s with { RecordOmitsTables = true, Concurrent = true, Prefill = true });
            await harness.RunAsync();
            states += harness.States;
            violations.AddRange(harness.Violations);
        }
        output.WriteLine($"record missing tables: {violations.Count} violation(s) in {states} crash states; first: {violations.FirstOrDefault()}");
        Assert.Contains(violations, v => !v.Contains("full check"));
    }

    /// <summary>The referee works: writing the L2 entry before the data is flushed (with a backing file) is caught.</summary>
    [Fact]
    public async Task MetadataBeforeDataWithABackingFileIsCaught()
    {
        int states = 0;
        var violations = new List<string>();
        for (int seed = 0; seed < 8 && violations.Count == 0; seed++)
        {
            var harness = new CrashHarness(Scenario(seed, breakOrdering: true));
            await harness.RunAsync();
            states += harness.States;
            violations.AddRange(harness.Violations);
        }
        output.WriteLine($"broken ordering: {violations.Count} violation(s) in {states} crash states; first: {violations.FirstOrDefault()}");
        Assert.NotEmpty(violations);
    }
}
