namespace Qed.Tests.Hostile;

/// <summary>What a mutation run counted over all its images.</summary>
internal sealed record MutantTally(long Opened, long Measured, long FormatErrors, long RefusedWrites, long Unsupported, IReadOnlyList<string> Unexpected);

/// <summary>
/// Runs one mutated image per seed, on every core, each within a time limit (a hang is an unexpected outcome, not
/// a stuck suite), and adds up what <see cref="MutantOutcome"/> recorded. Seeds are derived from a base seed so a
/// failing image can be replayed alone (QED_MUTATION_SEED and the iteration index).
/// </summary>
internal static class MutantRunner
{
    public static async Task<MutantTally> RunAsync(int iterations, int baseSeed, TimeSpan limit, Func<int, MutantOutcome, Task> runOne)
    {
        var unexpected = new List<string>();
        long opened = 0, measured = 0, formatErrors = 0, refusedWrites = 0, unsupported = 0;
        var gate = new Lock();
        await Parallel.ForEachAsync(Enumerable.Range(0, iterations), new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            async (i, _) =>
            {
                int seed = unchecked(baseSeed * 1_000_003 + i);
                var outcome = new MutantOutcome($"seed {seed}");
                try
                {
                    await runOne(seed, outcome).WaitAsync(limit);
                }
                catch (TimeoutException)
                {
                    outcome.Unexpected.Add($"seed {seed}: no answer within {limit.TotalSeconds} s (hang)");
                }
                lock (gate)
                {
                    if (outcome.Opened) opened++;
                    if (outcome.Measured) measured++;
                    formatErrors += outcome.FormatErrors;
                    refusedWrites += outcome.RefusedWrites;
                    unsupported += outcome.Unsupported;
                    unexpected.AddRange(outcome.Unexpected);
                }
            });
        return new MutantTally(opened, measured, formatErrors, refusedWrites, unsupported, unexpected);
    }
}
