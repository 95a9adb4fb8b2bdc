using System.Diagnostics;
using Qed.Check;
using Qed.Storage;
using Xunit.Abstractions;
using Qed.Formats.Qed;

namespace Qed.Tests.Hostile;

/// <summary>
/// Random bytes flipped in the header and tables of valid images; every open, read, write, map and check must work or
/// fail with an allowed exception, within a time limit.
/// <para>Allowed exceptions, and nothing else:</para>
/// <list type="bullet">
/// <item><see cref="ImageFormatException"/> from open, read, write, map and check: the image is malformed.</item>
/// <item><see cref="ImageNeedsCheckException"/> from a write, discard or write-zeroes only: writes are refused after a
/// corruption was met, until the image is checked.</item>
/// </list>
/// (<see cref="ArgumentOutOfRangeException"/> is reserved for caller mistakes, and every request here is inside the
/// image, so it is not allowed either.) QED_MUTATION_ITERATIONS sets the count (default 20,000).
/// </summary>
public class MutationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task MutatedImagesFailOnlyWithFormatExceptions()
    {
        int iterations = int.TryParse(Environment.GetEnvironmentVariable("QED_MUTATION_ITERATIONS"), out int n) ? n : 20_000;
        int baseSeed = int.TryParse(Environment.GetEnvironmentVariable("QED_MUTATION_SEED"), out int s) ? s : 1;
        byte[][] bases = [await SampleImages.TwoTablesAsync(), await SampleImages.TwoTablesAsync(backingName: true), await SampleImages.DefaultGeometryAsync()];
        var clock = Stopwatch.StartNew();
        var tally = await MutantRunner.RunAsync(iterations, baseSeed, Limit, (seed, outcome) => RunOneAsync(bases, seed, outcome));
        string summary = $"mutated images: {iterations} (seed {baseSeed}) in {clock.Elapsed.TotalSeconds:F1} s; opened {tally.Opened}, format errors {tally.FormatErrors}, refused writes {tally.RefusedWrites}, unexpected {tally.Unexpected.Count}";
        output.WriteLine(summary);
        Console.WriteLine(summary);
        Assert.True(tally.Unexpected.Count == 0, summary + "\n" + string.Join("\n", tally.Unexpected.Take(20)));
    }

    /// <summary>Mutates one image and runs every operation on it; records what failed how.</summary>
    private static async Task RunOneAsync(byte[][] bases, int seed, MutantOutcome outcome)
    {
        await Task.Yield();
        var rnd = new Random(seed);
        // The default geometry's 256 KiB tables cost ten times more per image: one image in ten uses it.
        var bytes = (byte[])bases[rnd.Next(10) == 0 ? 2 : rnd.Next(2)].Clone();
        Mutate(bytes, rnd);
        if (rnd.Next(10) == 0) bytes = bytes[..rnd.Next(bytes.Length)];
        var file = new MemoryStorage(bytes, $"mutant-{seed}");

        Task Try(string what, Func<Task> action, bool isWrite = false) => outcome.TryAsync(what, action, isWrite);

        QedImage? image = null;
        bool readOnly = rnd.Next(3) == 0;
        await Try("open", async () => image = await QedImage.OpenAsync(file, new ImageOpenOptions { ReadOnly = readOnly }));
        if (image != null)
        {
            outcome.Opened = true;
            long size = image.Size;
            var buffer = new byte[65536];
            await Try("read", async () =>
            {
                for (long at = 0; at < Math.Min(size, 256L << 10); at += buffer.Length)
                    await image.ReadAsync(at, buffer.AsMemory(0, (int)Math.Min(buffer.Length, size - at)));
            });
            if (size > 0)
            {
                long at = rnd.NextInt64(size);
                await Try("read", async () => await image.ReadAsync(at, buffer.AsMemory(0, (int)Math.Min(buffer.Length, size - at))));
            }
            await Try("map", async () =>
            {
                int extents = 0;
                await foreach (var _ in AllocationMap.EnumerateAsync(image, 0, size))
                    if (++extents > 2_000) break;
            });
            if (!readOnly && size > 0)
            {
                for (int w = 0; w < 3; w++)
                {
                    long at = rnd.NextInt64(Math.Min(size, 2L << 20)) & ~511L;
                    int length = (int)Math.Min(rnd.Next(1, 3) * 4096, size - at);
                    switch (rnd.Next(3))
                    {
                        case 0: await Try("write", async () => await image.WriteAsync(at, buffer.AsMemory(0, length)), isWrite: true); break;
                        case 1: await Try("write zeroes", async () => await image.WriteZeroesAsync(at, length), isWrite: true); break;
                        default: await Try("discard", async () => await image.DiscardAsync(at, length), isWrite: true); break;
                    }
                }
                await Try("flush", async () => await image.FlushAsync());
            }
            await Try("close", async () => await image.DisposeAsync());
        }
        await Try("check", async () => await QedChecker.CheckAsync(file, CheckRepair.None));
        if (rnd.Next(4) == 0)
        {
            await Try("repair", async () => await QedChecker.CheckAsync(file, rnd.Next(2) == 0 ? CheckRepair.All : CheckRepair.Leaks));
            // After a repair of a readable header, the check must not find anything the repair said it could fix.
            await Try("check after repair", async () =>
            {
                var after = await QedChecker.CheckAsync(file, CheckRepair.None);
                if (after.CheckErrors != 0) outcome.Unexpected.Add($"seed {seed}: check errors after repair");
            });
        }
    }

    /// <summary>Flips 1 to 4 bytes, mostly in the header and the used table entries, sometimes anywhere in the metadata.</summary>
    private static void Mutate(byte[] bytes, Random rnd)
    {
        long cs = BitConverter.ToUInt32(bytes, 4);
        long ts = BitConverter.ToUInt32(bytes, 8);
        long l1 = (long)BitConverter.ToUInt64(bytes, 40);
        var hot = new List<long>();
        for (int i = 0; i < 4; i++)
        {
            long entry = l1 + 8L * i;
            hot.Add(entry);
            ulong table = BitConverter.ToUInt64(bytes, (int)entry);
            if (table != 0 && (long)table + cs * ts <= bytes.Length)
                for (int j = 0; j < 24; j++) hot.Add((long)table + 8L * (j < 4 ? j : rnd.Next((int)(cs * ts / 8))));
        }
        int flips = rnd.Next(1, 5);
        for (int f = 0; f < flips; f++)
        {
            long at = rnd.Next(10) switch
            {
                < 4 => rnd.Next(64 + 16),                               // header and backing name
                < 8 => hot[rnd.Next(hot.Count)] + rnd.Next(8),          // a used L1/L2 entry
                _ => rnd.NextInt64(Math.Min(bytes.Length, l1 + cs * ts * 3)), // any metadata
            };
            if (at >= bytes.Length) continue;
            bytes[at] = rnd.Next(3) switch
            {
                0 => (byte)(bytes[at] ^ (1 << rnd.Next(8))),
                1 => (byte)rnd.Next(256),
                _ => rnd.Next(2) == 0 ? (byte)0 : (byte)0xff,
            };
        }
    }
}
