using Qed.Formats.Qed;
using Qed.Check;
using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Tests.Crash;

namespace Qed.Tests.Defrag;

/// <summary>
/// Defragment and online shrink crashed at every storage operation (everything before the last flush kept; all later
/// operations kept, or a random subset kept, dropped or torn at 512 bytes): each state reopens (automatic repair),
/// the check finds no corruption, and every byte flushed before the operation reads back. Also: cancelling a defrag
/// part way leaves a clean image with every byte.
/// </summary>
public class DefragCrashTests
{
    private sealed record Setup(byte[] Initial, byte[] Model, MemoryStorage? Backing);

    private static async Task<Setup> ScatteredAsync(int seed, bool withBacking, long size = 2L << 20)
    {
        var model = new byte[size];
        MemoryStorage? backing = null;
        if (withBacking)
        {
            var content = new byte[size / 2 + 4096 * 3];
            new Random(seed + 50).NextBytes(content);
            content.CopyTo(model, 0);
            backing = new MemoryStorage(content, "base.raw", access: FileAccess.Read);
        }
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions
        {
            Size = size, ClusterSize = 4096, TableSize = 2,
            BackingFile = withBacking ? "base.raw" : null, BackingFormat = withBacking ? ImageFormat.Raw : null,
        });
        await using (var image = await QedImage.OpenAsync(storage, null, Opener(backing)))
            await DefragLayout.ScatterAsync(image, model, seed);
        return new Setup(storage.ToArray(), model, backing);
    }

    private static Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? Opener(MemoryStorage? backing) =>
        backing is null ? null : (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true));

    /// <summary>Replays every crash point of <paramref name="storage"/>'s log; returns the states tried.</summary>
    private static async Task<int> VerifyEveryCrashPointAsync(CrashStorage storage, Setup setup, long keep, long[] sizes, int seed)
    {
        var rnd = new Random(seed);
        int states = 0;
        var failures = new List<string>();
        for (int k = 0; k <= storage.Position && failures.Count < 5; k++)
        {
            await VerifyAsync(storage.Materialize(k, (_, _) => CrashStorage.Fate.Keep, rnd), $"point {k}, all kept");
            if (storage.DurablePrefix(k) < k)
            {
                int s = rnd.Next();
                var pick = new Random(s);
                await VerifyAsync(storage.Materialize(k, (_, _) => pick.Next(3) switch { 0 => CrashStorage.Fate.Keep, 1 => CrashStorage.Fate.Drop, _ => CrashStorage.Fate.Tear }, pick),
                    $"point {k}, random subset {s}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        return states;

        async Task VerifyAsync(MemoryStorage file, string where)
        {
            states++;
            try
            {
                await using var image = await QedImage.OpenAsync(file, null, Opener(setup.Backing));
                var check = await QedChecker.CheckAsync(file, CheckRepair.None);
                if (check.Corruptions != 0 || check.CheckErrors != 0)
                    failures.Add($"{where}: {string.Join("; ", check.Messages)}");
                if (!sizes.Contains(image.Size)) failures.Add($"{where}: size {image.Size}");
                var content = new byte[keep];
                await image.ReadAsync(0, content);
                if (!content.AsSpan().SequenceEqual(setup.Model.AsSpan(0, (int)keep))) failures.Add($"{where}: content changed");
            }
            catch (Exception e)
            {
                failures.Add($"{where}: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    public async Task EveryCrashStateOfADefragKeepsTheData(int seed, bool withBacking)
    {
        var setup = await ScatteredAsync(seed, withBacking);
        var storage = new CrashStorage(setup.Initial, "crash.qed");
        var image = await QedImage.OpenAsync(storage, null, Opener(setup.Backing), new QedTuning { DefragBatchBytes = 64 << 10 }); // many batches
        await image.DefragmentAsync();
        await image.DisposeAsync();
        int states = await VerifyEveryCrashPointAsync(storage, setup, setup.Model.Length, [setup.Model.Length], seed);
        Assert.True(states > 500, $"{states} states");

        // And the end state is the defragmented one.
        var final = storage.Materialize(storage.Position, (_, _) => CrashStorage.Fate.Keep, new Random(0));
        await using var reopened = await QedImage.OpenAsync(final, null, Opener(setup.Backing));
        await DefragLayout.AssertDefragmentedAsync(reopened, final);
        await DefragLayout.AssertCleanAsync(final);
    }

    [Theory]
    [InlineData(3, false, 1L << 20)]
    [InlineData(4, true, 700 * 1024 + 512)]
    public async Task EveryCrashStateOfAnOnlineShrinkKeepsTheKeptRange(int seed, bool withBacking, long newSize)
    {
        var setup = await ScatteredAsync(seed, withBacking);
        var storage = new CrashStorage(setup.Initial, "crash.qed");
        var image = await QedImage.OpenAsync(storage, null, Opener(setup.Backing));
        await image.ResizeAsync(newSize, new ResizeOptions { AllowShrink = true });
        Assert.Equal(newSize, image.Size);
        await image.DisposeAsync();
        int states = await VerifyEveryCrashPointAsync(storage, setup, newSize, [setup.Model.Length, newSize], seed);
        Assert.True(states > 10, $"{states} states");
        // At most the new last cluster, allocated to zero its tail past the new end, comes on top.
        Assert.True(storage.Length <= setup.Initial.Length + 4096, $"the file grew: {setup.Initial.Length} -> {storage.Length}");
    }

    [Fact]
    public async Task AnOnlineShrinkCutsTheUnreferencedTailAndPunchesFreedClusters()
    {
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 4L << 20, ClusterSize = 4096, TableSize = 2 });
        await using var image = await QedImage.OpenAsync(storage);
        var data = new byte[4L << 20];
        new Random(9).NextBytes(data);
        await image.WriteAsync(3L << 20, data.AsMemory(3 << 20, 1 << 20)); // written first: lies low in the file
        await image.WriteAsync(0, data.AsMemory(0, 3 << 20));
        await image.FlushAsync();
        await image.ResizeAsync(2L << 20, new ResizeOptions { AllowShrink = true });
        // Header, L1 (2 clusters), the L2 table (2), guest [3M, 4M) (written first, so low in the file: punched out, a
        // leak until defrag) and guest [0, 2M); guest [2M, 3M) was the file's tail: cut.
        Assert.Equal((1 + 2 + 2 + 256 + 512) * 4096L, storage.Length);
        var (isData, _) = await storage.GetAllocationAsync(64 << 10, 64 << 10); // memory storage drops whole 64 KiB pages
        Assert.False(isData, "a freed cluster is punched");
        Assert.Equal(data.AsMemory(0, 2 << 20).ToArray(), await Operations.OperationFixtures.ReadAllAsync(image));
        await image.DefragmentAsync();
        await DefragLayout.AssertDefragmentedAsync(image, storage);
        Assert.Equal(data.AsMemory(0, 2 << 20).ToArray(), await Operations.OperationFixtures.ReadAllAsync(image));
    }

    /// <summary>
    /// The crash harness's random workloads (writes, zero writes, discards, flushes, some concurrent) with defrags
    /// running alongside the writes: every crash state keeps what was flushed and reads old or new data elsewhere.
    /// </summary>
    [Fact]
    public async Task DefragsAmongConcurrentWritesKeepEveryFlushedByteAtEveryCrashPoint()
    {
        var violations = new List<string>();
        int states = 0;
        for (int seed = 0; seed < 3; seed++)
        {
            var scenario = new CrashHarness.Scenario(seed, 4096, 2, 1L << 20, seed % 2 == 0 ? 0 : (1L << 20) / 2 + 1536, Ops: 24,
                Concurrent: true, Defrag: true);
            var harness = new CrashHarness(scenario);
            await harness.RunAsync(randomSubsetRate: 0.5);
            states += harness.States;
            violations.AddRange(harness.Violations);
        }
        Assert.True(violations.Count == 0, $"{states} states\n" + string.Join("\n", violations.Take(10)));
        Assert.True(states > 1000, $"{states} states");
    }

    [Fact]
    public async Task CancellingADefragPartWayLeavesACleanImageWithEveryByte()
    {
        var setup = await ScatteredAsync(5, withBacking: false, size: 4L << 20);
        var storage = new MemoryStorage(setup.Initial);
        await using var image = await QedImage.OpenAsync(storage, null, null, new QedTuning { DefragBatchBytes = 64 << 10 });
        using var cts = new CancellationTokenSource();
        long lastDone = 0, total = 0;
        var progress = new DefragTests.SyncProgress(p =>
        {
            (lastDone, total) = p;
            if (p.Item1 * 3 >= p.Item2) cts.Cancel(); // a third of the way
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => image.DefragmentAsync(progress, cts.Token));
        Assert.True(lastDone > 0 && lastDone < total, $"{lastDone}/{total}");
        Assert.Equal(setup.Model, await Operations.OperationFixtures.ReadAllAsync(image));
        await image.FlushAsync();
        await DefragLayout.AssertCleanAsync(storage, leaksAllowed: true);
        // Still usable, and a later run finishes the job.
        await image.DefragmentAsync();
        Assert.Equal(setup.Model, await Operations.OperationFixtures.ReadAllAsync(image));
        await DefragLayout.AssertDefragmentedAsync(image, storage);
    }
}
