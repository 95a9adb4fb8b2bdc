using Qed.Check;
using Qed.Operations;
using Qed.Storage;
using Qed.Tests.Image;
using Qed.Formats.Qed;

namespace Qed.Tests.Crash;

/// <summary>
/// Streaming (the whole chain, and down to a base) crashed at every storage operation, with all unflushed writes kept
/// and with a random subset of them (torn at 512 bytes); and cancelled at several points. Every state reopens over the
/// chain its header names, checks without corruption, and reads exactly what the chain read before the stream.
/// </summary>
public class StreamCrashTests
{
    [Theory]
    [InlineData(null, 11, false)]
    [InlineData("m1.qed", 12, false)]
    [InlineData("base.raw", 13, false)]
    [InlineData("m1.qed", 14, true)]
    [InlineData(null, 15, true)]
    public async Task EveryCrashStateOfAStreamReadsTheSame(string? baseName, int seed, bool longOldName)
    {
        var chain = await StreamChain.BuildAsync(seed);
        string oldName = "m2.qed";
        if (longOldName)
        {
            // A name past the first sector: the header switch takes the name-first, three-step path.
            oldName = new string('n', 700) + ".qed";
            chain.Files[oldName] = chain.Files["m2.qed"];
            var top = new MemoryStorage("top.qed");
            await QedImage.CreateAsync(top, new QedCreateOptions { Size = StreamChain.Size, ClusterSize = 4096, TableSize = 2, BackingFile = oldName });
            await using (var image = await chain.OpenTopAsync(top))
                await image.WriteAsync(5 << 20, new byte[] { 1, 2, 3 });
            chain.Files["top.qed"] = top.ToArray();
        }
        var model = await chain.ReadAllAsync(new MemoryStorage(chain.Files["top.qed"], "top.qed"));
        long leaksBefore = (await QedChecker.CheckAsync(new MemoryStorage(chain.Files["top.qed"]), CheckRepair.None)).Leaks;
        var storage = new CrashStorage(chain.Files["top.qed"], "top.qed");
        await using (var image = await chain.OpenTopAsync(storage))
            await StreamOperation.RunAsync(image, new StreamOptions { Base = baseName });

        var violations = new List<string>();
        var rnd = new Random(seed);
        int end = storage.Position, states = 0;
        for (int k = 0; k <= end; k++)
        {
            await VerifyAsync(storage.Materialize(k, (_, _) => CrashStorage.Fate.Keep, rnd), $"crash point {k}/{end}, all kept", k == end);
            if (storage.DurablePrefix(k) < k)
            {
                var pick = new Random(rnd.Next());
                var state = storage.Materialize(k, (_, _) => pick.Next(10) switch { < 5 => CrashStorage.Fate.Keep, < 8 => CrashStorage.Fate.Drop, _ => CrashStorage.Fate.Tear }, pick);
                await VerifyAsync(state, $"crash point {k}/{end}, random subset", false);
            }
            if (violations.Count > 10) break;
        }
        Assert.True(violations.Count == 0, $"{states} states; " + string.Join("\n", violations));
        // A guard against a degenerate run, not a correctness check. Streaming the two layers above m1 makes about 35
        // storage operations since overlay entries are written back once at the flush rather than after each chunk.
        Assert.True(states > 30, $"only {states} crash states");

        async Task VerifyAsync(MemoryStorage file, string where, bool final)
        {
            states++;
            try
            {
                await using (var image = await chain.OpenTopAsync(file))
                {
                    if (image.BackingFilename != oldName && image.BackingFilename != baseName)
                        violations.Add($"{where}: backing file '{image.BackingFilename}'");
                    if (final && image.BackingFilename != baseName) violations.Add($"{where}: the stream did not finish");
                    if (final) StreamToBaseTests.AssertNoStaleName(file.ToArray(), baseName);
                    var content = new byte[image.Size];
                    await image.ReadAsync(0, content);
                    if (!content.AsSpan().SequenceEqual(model))
                        violations.Add($"{where}: differs at {content.AsSpan().CommonPrefixLength(model)}");
                }
                var check = await QedChecker.CheckAsync(file, CheckRepair.None);
                if (check.Corruptions != 0 || check.CheckErrors != 0 || (final && check.Leaks != leaksBefore))
                    violations.Add($"{where}: {check.Corruptions} corruption(s), {check.CheckErrors} error(s), {check.Leaks} leak(s): {string.Join("; ", check.Messages)}");
            }
            catch (Exception e)
            {
                violations.Add($"{where}: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    /// <summary>Cancels as soon as the stream has reported <paramref name="after"/> progress steps.</summary>
    private sealed class CancelAfter(CancellationTokenSource cts, int after) : IProgress<ImageProgress>
    {
        private int _reports;
        public void Report(ImageProgress value)
        {
            // Reports after a step only: the first, at the start (nothing done), is not a step.
            if (value.BytesDone > 0 && ++_reports == after) cts.Cancel();
        }
    }

    [Theory]
    [InlineData(null, 1)]
    [InlineData(null, 5)]
    [InlineData("m1.qed", 3)]
    [InlineData("base.raw", 1)]
    [InlineData("base.raw", 6)]
    public async Task ACancelledStreamLeavesTheImageAsItReadAndCanBeRunAgain(string? baseName, int after)
    {
        var chain = await StreamChain.BuildAsync(20 + after);
        var file = new MemoryStorage(chain.Files["top.qed"], "top.qed");
        var model = await chain.ReadAllAsync(file);
        long leaksBefore = (await QedChecker.CheckAsync(file, CheckRepair.None)).Leaks;
        long allocatedBefore = await AllocatedClustersAsync(chain, file);

        using var cts = new CancellationTokenSource();
        await using (var image = await chain.OpenTopAsync(file))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                StreamOperation.RunAsync(image, new StreamOptions { Base = baseName }, new CancelAfter(cts, after), cts.Token));
            Assert.Equal("m2.qed", image.BackingFilename);
            var content = new byte[image.Size];
            await image.ReadAsync(0, content);
            Assert.True(content.AsSpan().SequenceEqual(model), $"differs at {content.AsSpan().CommonPrefixLength(model)}");
        }
        Assert.True(await AllocatedClustersAsync(chain, file) > allocatedBefore, "the stream was cancelled before it copied anything");
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.True(check.Corruptions == 0 && check.CheckErrors == 0 && check.Leaks == leaksBefore, string.Join("; ", check.Messages));
        Assert.True((await chain.ReadAllAsync(file)).AsSpan().SequenceEqual(model));

        await using (var image = await chain.OpenTopAsync(file))
            await StreamOperation.RunAsync(image, new StreamOptions { Base = baseName });
        var after2 = await chain.ReadAllAsync(file);
        Assert.True(after2.AsSpan().SequenceEqual(model), $"after the second run, differs at {after2.AsSpan().CommonPrefixLength(model)}");
        check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.True(check.Corruptions == 0 && check.CheckErrors == 0 && check.Leaks == leaksBefore, string.Join("; ", check.Messages));
        StreamToBaseTests.AssertNoStaleName(file.ToArray(), baseName);
    }

    private static async Task<long> AllocatedClustersAsync(StreamChain chain, MemoryStorage file)
    {
        await using var image = await chain.OpenTopAsync(file, readOnly: true);
        long allocated = 0;
        for (long offset = 0; offset < image.Size;)
        {
            var extent = await image.GetLayerExtentAsync(offset, image.Size - offset);
            if (extent.Kind != ExtentKind.Unallocated) allocated += extent.Length;
            offset += extent.Length;
        }
        return allocated / image.ClusterSize;
    }
}
