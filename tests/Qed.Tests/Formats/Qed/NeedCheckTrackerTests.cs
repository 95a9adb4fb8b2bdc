using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class NeedCheckTrackerTests
{
    private static (EngineFixture F, HeaderWriter Header) Setup(QedFeatures features = QedFeatures.None)
    {
        var f = new EngineFixture();
        var header = EngineFixture.NewHeader(features);
        var bytes = new byte[QedHeader.Size];
        header.WriteTo(bytes);
        f.Memory.WriteAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        return (f, new HeaderWriter(f.File, header, null));
    }

    private static bool OnDisk(EngineFixture f) => (f.ReadU64(QedHeader.FeaturesOffset) & (ulong)QedFeatures.NeedCheck) != 0;

    [Fact]
    public async Task TheBitIsDurableBeforeTheFirstAllocationThatNeedsItGoesOn()
    {
        var (f, header) = Setup();
        var tracker = new NeedCheckTracker(header, new RecoveryRecordWriter(header, enabled: false), () => 0, keep: false, TimeSpan.FromHours(1));
        await tracker.BeginAllocationAsync(needsCheckBit: false, 0, CancellationToken.None);
        Assert.False(OnDisk(f)); // a zero-cluster or backed allocation needs no bit
        f.File.ClearLog();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        Assert.True(OnDisk(f));
        Assert.Equal(["W 0 64", "F"], f.File.Log);
        Assert.True(header.Current.NeedsCheck);
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None); // already set: no write
        Assert.Equal(2, f.File.Log.Length);
        Assert.Equal(3, tracker.ActiveAllocations);
    }

    [Fact]
    public async Task TheBitClearsOnlyWithNoAllocationInFlightAndAfterASync()
    {
        var (f, header) = Setup();
        var tracker = new NeedCheckTracker(header, new RecoveryRecordWriter(header, enabled: false), () => 0, keep: false, TimeSpan.FromHours(1));
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        await tracker.ClearIfIdleAsync(CancellationToken.None);
        Assert.True(OnDisk(f), "an allocation is in flight");
        tracker.EndAllocation();
        f.File.ClearLog();
        await tracker.ClearIfIdleAsync(CancellationToken.None);
        Assert.False(OnDisk(f));
        Assert.Equal(["F", "W 0 64", "F"], f.File.Log); // what the bit protects is durable before it goes
        Assert.False(header.Current.NeedsCheck);
    }

    [Fact]
    public async Task AnImageOpenedWithTheBitAndNotRepairedKeepsIt()
    {
        var (f, header) = Setup(QedFeatures.NeedCheck);
        var tracker = new NeedCheckTracker(header, new RecoveryRecordWriter(header, enabled: false), () => 0, keep: true, TimeSpan.FromMilliseconds(1));
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        tracker.EndAllocation();
        tracker.ScheduleClear();
        await tracker.ClearIfIdleAsync(CancellationToken.None);
        await Task.Delay(50);
        Assert.True(OnDisk(f));
        await tracker.StopAsync();
    }

    [Fact]
    public async Task TheIdleTimerClearsTheBitAndCloseStopsIt()
    {
        var (f, header) = Setup();
        var tracker = new NeedCheckTracker(header, new RecoveryRecordWriter(header, enabled: false), () => 0, keep: false, TimeSpan.FromMilliseconds(100));
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        tracker.EndAllocation();
        tracker.ScheduleClear();
        Assert.True(OnDisk(f));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (OnDisk(f) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.False(OnDisk(f));

        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        tracker.EndAllocation();
        tracker.ScheduleClear();
        await tracker.StopAsync();
        await Task.Delay(300);
        Assert.True(OnDisk(f), "a stopped tracker's timer never fires");
        tracker.ScheduleClear(); // closing: not re-armed
        await Task.Delay(300);
        Assert.True(OnDisk(f));
    }

    [Fact]
    public async Task AnAllocationThatArrivesDuringAClearWaitsForItAndSetsTheBitAgain()
    {
        var (f, header) = Setup();
        var tracker = new NeedCheckTracker(header, new RecoveryRecordWriter(header, enabled: false), () => 0, keep: false, TimeSpan.FromHours(1));
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        tracker.EndAllocation();
        f.File.FlushDelay = TimeSpan.FromMilliseconds(100);
        var clearing = tracker.ClearIfIdleAsync(CancellationToken.None);
        await Task.Delay(20);
        var begin = tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None).AsTask();
        await clearing;
        await begin;
        Assert.True(OnDisk(f));
        Assert.Equal(1, tracker.ActiveAllocations);
    }
}
