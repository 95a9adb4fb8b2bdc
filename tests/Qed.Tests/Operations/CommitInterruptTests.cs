using Qed.Check;
using Qed.Formats.Raw;
using Qed.Operations;
using Qed.Storage;
using Qed.Tests.Crash;
using Qed.Formats.Qed;

namespace Qed.Tests.Operations;

/// <summary>
/// Commit interrupted: cancelled at several points of the copy (the image reads as before, both files check clean,
/// and a second run finishes), and crashed at every storage operation of the emptying step that follows the flush of
/// the base (every state reads the same through the base, with no corruption).
/// </summary>
public sealed class CommitInterruptTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("qed-commit-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    /// <summary>Cancels once the copy has dealt with <paramref name="fraction"/> of the image (written or skipped).</summary>
    private sealed class CancelAt(CancellationTokenSource cts, double fraction) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value)
        {
            if (value.BytesDone >= fraction * value.TotalBytes) cts.Cancel();
        }
    }

    private async Task<byte[]> ReadAsync(string name)
    {
        await using var image = await DiskImage.OpenAsync(PathOf(name), new ImageOpenOptions { ReadOnly = true });
        var content = new byte[image.Size];
        await image.ReadAsync(0, content);
        return content;
    }

    private static async Task AssertCleanAsync(string path)
    {
        using var file = FileStorage.Open(path, writable: false);
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.True(check.Corruptions == 0 && check.Leaks == 0 && check.CheckErrors == 0,
            $"{path}: {check.Corruptions} corruption(s), {check.Leaks} leak(s), {check.CheckErrors} error(s): {string.Join("; ", check.Messages)}");
    }

    [Theory]
    [InlineData(1, 0.3)]
    [InlineData(2, 0.6)]
    [InlineData(3, 0.9)]
    public async Task ACancelledCommitLosesNothingAndCanBeRunAgain(int seed, double fraction)
    {
        const long Size = 32L << 20;
        await QedImage.CreateAsync(PathOf("base.qed"), new QedCreateOptions { Size = Size });
        var model = new byte[Size];
        await using (var image = await DiskImage.OpenAsync(PathOf("base.qed")))
            await OperationFixtures.ScribbleAsync(image, model, seed, 20);
        await QedImage.CreateAsync(PathOf("top.qed"), new QedCreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed });
        await using (var image = await DiskImage.OpenAsync(PathOf("top.qed")))
            await OperationFixtures.ScribbleAsync(image, model, seed + 10, 40);
        string baseBefore = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(PathOf("base.qed"))));

        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            CommitOperation.CommitAsync(PathOf("top.qed"), null, null, new CancelAt(cts, fraction), cts.Token));
        // Past half-way pieces have been written into the base (each reports after its write; the image has data all over).
        if (fraction > 0.5) Assert.NotEqual(baseBefore, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(PathOf("base.qed")))));
        Assert.True((await ReadAsync("top.qed")).AsSpan().SequenceEqual(model), "the image changed");
        await AssertCleanAsync(PathOf("top.qed"));
        await AssertCleanAsync(PathOf("base.qed"));

        await CommitOperation.CommitAsync(PathOf("top.qed"), null);
        Assert.True((await ReadAsync("top.qed")).AsSpan().SequenceEqual(model), "the image changed after the second run");
        Assert.True((await ReadAsync("base.qed")).AsSpan().SequenceEqual(model), "the base does not hold the image's content");
        await AssertCleanAsync(PathOf("top.qed"));
        await AssertCleanAsync(PathOf("base.qed"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task EveryCrashStateOfEmptyingAfterCommitReadsTheSame(int seed)
    {
        // The state commit reaches once the base is flushed: the base (raw here) holds what the image shows.
        const long Size = 8L << 20;
        var baseBytes = new byte[Size];
        new Random(seed).NextBytes(baseBytes);
        var top = new MemoryStorage("top.qed");
        await QedImage.CreateAsync(top, new QedCreateOptions { Size = Size, ClusterSize = 4096, TableSize = 2, BackingFile = "base.raw", BackingFormat = ImageFormat.Raw });
        var model = (byte[])baseBytes.Clone();
        Task<DiskImage> OpenBase(string name, ImageFormat? format, CancellationToken ct) =>
            Task.FromResult<DiskImage>(new RawImage(new MemoryStorage(baseBytes, "base.raw", access: FileAccess.Read), readOnly: true));
        await using (var image = await QedImage.OpenAsync(top, null, OpenBase))
            await OperationFixtures.ScribbleAsync(image, model, seed, 30);
        model.CopyTo(baseBytes, 0); // committed

        var crash = new CrashStorage(top.ToArray(), "top.qed");
        await using (var image = await QedImage.OpenAsync(crash)) // as commit opens it: without the backing chain
            await image.EmptyAsync(CancellationToken.None);

        var violations = new List<string>();
        var rnd = new Random(seed);
        int end = crash.Position;
        for (int k = 0; k <= end && violations.Count < 10; k++)
        {
            await VerifyAsync(crash.Materialize(k, (_, _) => CrashStorage.Fate.Keep, rnd), $"crash point {k}/{end}, all kept", k == end);
            // Several subsets of the operations since the last flush: a state that keeps a later one (the truncation)
            // and drops an earlier one (an L1 write) must come up among them.
            for (int subset = 0; subset < 16 && crash.DurablePrefix(k) < k; subset++)
            {
                var pick = new Random(rnd.Next());
                await VerifyAsync(crash.Materialize(k, (_, _) => pick.Next(10) switch { < 5 => CrashStorage.Fate.Keep, < 8 => CrashStorage.Fate.Drop, _ => CrashStorage.Fate.Tear }, pick),
                    $"crash point {k}/{end}, random subset {subset}", false);
            }
        }
        Assert.True(end > 3, $"only {end} storage operations");
        Assert.True(violations.Count == 0, string.Join("\n", violations));

        async Task VerifyAsync(MemoryStorage state, string where, bool final)
        {
            try
            {
                await using (var image = await QedImage.OpenAsync(state, null, OpenBase))
                {
                    var content = new byte[Size];
                    await image.ReadAsync(0, content);
                    if (!content.AsSpan().SequenceEqual(model)) violations.Add($"{where}: differs at {content.AsSpan().CommonPrefixLength(model)}");
                }
                var check = await QedChecker.CheckAsync(state, CheckRepair.None);
                if (check.Corruptions != 0 || check.CheckErrors != 0 || (final && check.Leaks != 0))
                    violations.Add($"{where}: {check.Corruptions} corruption(s), {check.CheckErrors} error(s), {check.Leaks} leak(s)");
                if (final && state.Length != 2 * 4096 * 1 + 4096) violations.Add($"{where}: not emptied ({state.Length} bytes)");
            }
            catch (Exception e)
            {
                violations.Add($"{where}: {e.GetType().Name}: {e.Message}");
            }
        }
    }
}
