using System.Text;
using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

/// <summary>
/// The recovery record's on-disk contract (docs/recovery-record.md) and its writer's ordering: which writes and syncs
/// each step costs, and what a reader trusts.
/// </summary>
public class RecoveryRecordTests
{
    // The fixture's geometry: a 4 KiB header area and 1024 L1 entries, so the record is a head and one bitmap sector
    // in the last 1 KiB of the header area.
    private const long Head = 4096 - 1024, Bitmap = 4096 - 512;

    private static (EngineFixture F, HeaderWriter Header, RecoveryRecordWriter Record, NeedCheckTracker Tracker) Setup(
        QedHeader? header = null, string? name = null)
    {
        var f = new EngineFixture();
        var h = header ?? EngineFixture.NewHeader();
        var bytes = new byte[4096];
        h.WriteTo(bytes);
        if (name != null) Encoding.UTF8.GetBytes(name).CopyTo(bytes, h.BackingFilenameOffset);
        f.Memory.WriteAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        f.File.ClearLog();
        var writer = new HeaderWriter(f.File, h, name);
        var record = new RecoveryRecordWriter(writer, enabled: true);
        return (f, writer, record, new NeedCheckTracker(writer, record, () => 1 << 20, keep: false, TimeSpan.FromHours(1)));
    }

    private static RecoveryRecordFormat.Contents Read(EngineFixture f, QedHeader header)
    {
        var layout = RecoveryRecordFormat.For(header)!;
        var area = new byte[layout.AreaBytes];
        f.Memory.ReadAsync(layout.AreaOffset, area).AsTask().GetAwaiter().GetResult();
        return layout.Decode(area);
    }

    private static ulong Autoclear(EngineFixture f) => f.ReadU64(QedHeader.AutoclearFeaturesOffset);

    [Fact]
    public async Task TheFirstAllocationRecordsItsTableBeforeTheHeaderSaysTheRecordIsValid()
    {
        var (f, header, _, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 7, CancellationToken.None);
        // One extra write-and-sync over NEED_CHECK alone: the head and the table's sector, then the header.
        Assert.Equal([$"W {Head} 512", $"W {Bitmap} 512", "F", "W 0 64", "F"], f.File.Log);
        Assert.Equal(RecoveryRecordFormat.AutoclearBit, Autoclear(f));
        var contents = Read(f, header.Current);
        Assert.True(contents.Valid, contents.Reason);
        Assert.Equal([7], contents.Tables);
        Assert.Equal(1 << 20, contents.CleanFileEnd);
    }

    [Fact]
    public async Task ANewTableCostsOneSectorAndSyncAndATableAlreadyRecordedCostsNothing()
    {
        var (f, header, record, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 1, CancellationToken.None);
        f.File.ClearLog();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 900, CancellationToken.None);
        Assert.Equal([$"W {Bitmap} 512", "F"], f.File.Log);
        f.File.ClearLog();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 900, CancellationToken.None);
        await tracker.BeginAllocationAsync(needsCheckBit: true, 1, CancellationToken.None);
        await tracker.BeginAllocationAsync(needsCheckBit: false, 300, CancellationToken.None); // entries never ahead of data
        Assert.Empty(f.File.Log);
        Assert.Equal([1, 900], Read(f, header.Current).Tables);
        Assert.Equal(2, record.TablesRecorded);
    }

    [Fact]
    public async Task ManyNewTablesAtOnceShareBatches()
    {
        var (f, header, _, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 0, CancellationToken.None);
        f.File.ClearLog();
        f.File.FlushDelay = TimeSpan.FromMilliseconds(20);
        await Task.WhenAll(Enumerable.Range(1, 40).Select(i => tracker.BeginAllocationAsync(needsCheckBit: true, i * 17, CancellationToken.None).AsTask()));
        int syncs = f.File.Log.Count(l => l == "F");
        Assert.True(syncs < 40, $"{syncs} syncs for 40 new tables: batches are not shared");
        Assert.Equal(Enumerable.Range(0, 41).Select(i => i * 17).ToArray(), Read(f, header.Current).Tables);
    }

    [Fact]
    public async Task TheClearEndsTheEpochAndTheNextEpochIgnoresTheOldBits()
    {
        var (f, header, _, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 3, CancellationToken.None);
        await tracker.BeginAllocationAsync(needsCheckBit: true, 4, CancellationToken.None);
        tracker.EndAllocation();
        tracker.EndAllocation();
        await tracker.ClearIfIdleAsync(CancellationToken.None);
        Assert.Equal(0UL, Autoclear(f));
        Assert.False(header.Current.NeedsCheck);

        await tracker.BeginAllocationAsync(needsCheckBit: true, 5, CancellationToken.None);
        Assert.Equal([5], Read(f, header.Current).Tables); // 3 and 4 were the last epoch's
    }

    [Fact]
    public async Task ADamagedSectorMakesTheRecordUntrusted()
    {
        var (f, header, _, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 3, CancellationToken.None);
        var layout = RecoveryRecordFormat.For(header.Current)!;
        Assert.True(Read(f, header.Current).Valid);

        await f.Memory.WriteAsync(Bitmap + 100, new byte[] { 0xff }); // a torn or rotted bitmap sector
        var damaged = Read(f, header.Current);
        Assert.False(damaged.Valid);
        Assert.Contains("bitmap sector 1", damaged.Reason);

        await f.Memory.WriteAsync(Bitmap, new byte[512]); // never written: no bits, trusted
        Assert.True(Read(f, header.Current).Valid);
        await f.Memory.WriteAsync(Head + 8, new byte[] { 1 }); // the head's epoch changed under its CRC
        Assert.False(Read(f, header.Current).Valid);
        Assert.Equal(1024, layout.AreaBytes);
    }

    [Fact]
    public void NoRecordWhenTheBackingNameReachesTheRecordArea()
    {
        var far = EngineFixture.NewHeader(QedFeatures.BackingFile) with { BackingFilenameOffset = 64, BackingFilenameSize = 3100 };
        Assert.Null(RecoveryRecordFormat.For(far));
        var near = far with { BackingFilenameSize = 3000 };
        Assert.Equal(Head, RecoveryRecordFormat.For(near)!.AreaOffset);
    }

    [Fact]
    public async Task ABackingNameMovedOverTheRecordDropsItInTheSameHeaderWrite()
    {
        var (f, header, record, tracker) = Setup();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 3, CancellationToken.None);
        Assert.Equal(RecoveryRecordFormat.AutoclearBit, Autoclear(f));
        await header.SwitchBackingAsync(new string('b', 3500), "raw", CancellationToken.None);
        Assert.Equal(0UL, Autoclear(f));
        Assert.Null(header.Record);
        Assert.True(header.Current.NeedsCheck); // NEED_CHECK alone covers the rest of the session
        f.File.ClearLog();
        await tracker.BeginAllocationAsync(needsCheckBit: true, 9, CancellationToken.None);
        Assert.Empty(f.File.Log); // nothing is written over the name
        Assert.False(record.IsRecording);
    }
}
