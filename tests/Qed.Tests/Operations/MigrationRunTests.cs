using System.Security.Cryptography;
using Qed.Formats.Qed;
using Qed.Operations;
using Qed.Operations.Migration;

namespace Qed.Tests.Operations;

/// <summary>
/// <see cref="MigrationPlan.RunAsync"/>: targets verified before they are put in place, sources never written (a dirty
/// one read as it is), progress that ends at the totals, cancellation that leaves no file under a final name, and
/// re-runs that keep what is up to date.
/// </summary>
public sealed class MigrationRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-migrate-run-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private async Task QedAsync(string name, byte fill, long offset, int length, string? backing = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(P(name))!);
        await QedImage.CreateAsync(P(name), new QedCreateOptions { Size = 8 << 20, BackingFile = backing, BackingFormat = backing is null ? null : ImageFormat.Qed });
        await using var image = await DiskImage.OpenAsync(P(name));
        var data = new byte[length];
        Array.Fill(data, fill);
        await image.WriteAsync(offset, data);
    }

    private Task<MigrationPlan> PlanAsync(MigrationOptions? options = null) => MigrationPlan.CreateAsync([P("vault")], P("out"), options);

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [Fact]
    public async Task TargetsReadAsTheirSourcesAndSourcesAreUntouched()
    {
        await QedAsync("vault/base.qed", 0x11, 0, 1 << 20);
        await QedAsync("vault/top.qed", 0x22, 512 << 10, 64 << 10, "base.qed");
        // A dirty source: NEED_CHECK set by hand, as a crash leaves it. A read-write open would repair it; the migration must not.
        using (var f = new FileStream(P("vault/top.qed"), FileMode.Open))
        {
            f.Position = 16;
            int features = f.ReadByte();
            f.Position = 16;
            f.WriteByte((byte)(features | 0x02));
        }
        string[] hashes = [Hash(P("vault/base.qed")), Hash(P("vault/top.qed"))];

        var progress = new List<MigrationProgress>();
        var report = await (await PlanAsync()).RunWithCountsAsync(new SyncProgress(progress));

        Assert.True(report.AllVerified, string.Join("; ", report.Entries.Select(e => $"{e.Source}: {e.Outcome} {e.Error}")));
        Assert.Equal([Hash(P("vault/base.qed")), Hash(P("vault/top.qed"))], hashes);
        Assert.True(report.Entries.Single(e => e.Source == P("vault/top.qed")).SourceDirty);
        await using (var source = await DiskImage.OpenAsync(P("vault/top.qed"), new ImageOpenOptions { ReadOnly = true }))
        await using (var target = await DiskImage.OpenAsync(P("out/top.qcow2"), new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal(ImageFormat.Qcow2, target.Format);
            Assert.Equal(P("out/base.qcow2"), Path.GetFullPath(target.Backing!.Name));
            Assert.True((await CompareOperation.CompareAsync(source, target, strict: false)).Identical);
        }
        var last = progress[^1];
        Assert.Equal((last.TotalBytes, 2), (last.BytesDone, last.ImagesDone));
        Assert.Equal(16L << 20, last.TotalBytes);
    }

    [Fact]
    public async Task ARerunKeepsWhatIsUpToDateAndRedoesAChangedChain()
    {
        await QedAsync("vault/base.qed", 0x11, 0, 1 << 20);
        await QedAsync("vault/top.qed", 0x22, 0, 4096, "base.qed");
        await QedAsync("vault/alone.qed", 0x33, 0, 4096);
        await (await PlanAsync()).RunAsync();
        var again = await (await PlanAsync()).RunAsync();
        Assert.All(again.Entries, e => Assert.Equal(MigrationOutcome.UpToDate, e.Outcome));

        await using (var image = await DiskImage.OpenAsync(P("vault/base.qed")))
            await image.WriteAsync(2 << 20, new byte[] { 1, 2, 3 });
        var third = await (await PlanAsync()).RunAsync();
        Assert.Equal([MigrationOutcome.UpToDate, MigrationOutcome.Migrated, MigrationOutcome.Migrated],
            third.Entries.OrderBy(e => e.Source, StringComparer.Ordinal).Select(e => e.Outcome)); // alone, base, top
    }

    [Fact]
    public async Task CancellationLeavesNothingUnderAFinalName()
    {
        await QedAsync("vault/big.qed", 0x44, 0, 8 << 20);
        using var cts = new CancellationTokenSource();
        var plan = await PlanAsync();
        var progress = new SyncProgress([], () => cts.Cancel());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => plan.RunWithCountsAsync(progress, cts.Token));
        Assert.False(File.Exists(P("out/big.qcow2")));
        Assert.Empty(Directory.GetFiles(P("out"), "*.qed-migrate-tmp", SearchOption.AllDirectories));
        var finished = await (await PlanAsync()).RunAsync();
        Assert.True(finished.AllVerified);
    }

    [Fact]
    public async Task AnOverlayCutOffAfterItsBackingFileWasMadeAgainIsMadeAgainToo()
    {
        await QedAsync("vault/base.qed", 0x11, 0, 1 << 20);
        await QedAsync("vault/top.qed", 0x22, 0, 4096, "base.qed");
        await (await PlanAsync()).RunAsync();
        await using (var image = await DiskImage.OpenAsync(P("vault/base.qed")))
            await image.WriteAsync(2 << 20, new byte[] { 1, 2, 3 });

        // Cut off once base.qcow2 is made again, before top.qcow2 is: the report still has top verified over the old base.
        using var cts = new CancellationTokenSource();
        var cut = new SyncProgress([], onImage: done => { if (done == 1) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            await (await PlanAsync(new MigrationOptions { Jobs = 1 })).RunWithCountsAsync(cut, cts.Token));

        var report = await (await PlanAsync()).RunAsync();
        Assert.Equal(MigrationOutcome.Migrated, report.Entries.Single(e => e.Source == P("vault/top.qed")).Outcome);
        await using var source = await DiskImage.OpenAsync(P("vault/top.qed"), new ImageOpenOptions { ReadOnly = true });
        await using var target = await DiskImage.OpenAsync(P("out/top.qcow2"), new ImageOpenOptions { ReadOnly = true });
        Assert.True((await CompareOperation.CompareAsync(source, target, strict: false)).Identical);
    }

    /// <summary>Records reports on the reporting thread (Progress&lt;T&gt; would post them later); optionally acts on the first copy report.</summary>
    private sealed class SyncProgress(List<MigrationProgress> list, Action? onCopy = null, Action<int>? onImage = null) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value)
        {
            lock (list) list.Add(value);
            if (value.BytesDone > 0 && value.ImagesDone == 0) onCopy?.Invoke();
            onImage?.Invoke(value.ImagesDone);
        }
    }
}
