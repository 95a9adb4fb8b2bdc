using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class L2TableTests
{
    [Fact]
    public void ANewTableIsSnapshottedWholeAndLinksItself()
    {
        var table = new L2Table(2, 65536, new ulong[1024], linked: false);
        table.SetEntries(10, 1, 1, 0, markDirty: true);
        var snapshot = table.SnapshotDirty()!.Value;
        Assert.Equal((65536L, true, 8192), (snapshot.At, snapshot.Link, snapshot.Bytes.Length));
        Assert.Equal(1UL, TableCodec.Decode(snapshot.Bytes)[10]);
        Assert.False(table.IsDirty);
    }

    [Fact]
    public void ALinkedTableWritesTheSectorsOfItsDirtyRangeAndTheEntriesAskedFor()
    {
        var table = new L2Table(0, 65536, new ulong[1024], linked: true);
        Assert.Null(table.SnapshotDirty()); // clean and linked: nothing to write
        table.SetEntries(3, 2, 100 << 12, 1 << 12, markDirty: true);
        table.SetEntries(200, 1, 1, 0, markDirty: true);
        Assert.True(table.IsDirty);
        var (bytes, at, link) = table.SnapshotDirty()!.Value;
        Assert.False(link);
        Assert.Equal(65536, at);                   // sectors 0-3: entries 0-255 cover [3, 200]
        Assert.Equal(256 * 8, bytes.Length);
        var entries = TableCodec.Decode(bytes);
        Assert.Equal([100UL << 12, 101UL << 12], entries[3..5]);
        Assert.Equal(1UL, entries[200]);
        Assert.Null(table.SnapshotDirty());

        // An eager write also takes what is dirty, so no change is left behind unwritten.
        table.SetEntries(700, 1, 1, 0, markDirty: true);
        var eager = table.SetAndSnapshot(1000, 1, 1, 0);
        Assert.Equal(65536 + 8 * 640, eager.At);   // sectors 10-15: entries 640-1023
        Assert.Equal(384 * 8, eager.Bytes.Length);
        Assert.False(table.IsDirty);
    }

    [Fact]
    public void AMoveChangesOnlyWhereTheTableLives()
    {
        var table = new L2Table(0, 65536, new ulong[1024], linked: true);
        table.SetEntries(0, 1, 1, 0, markDirty: false);
        table.MoveTo(131072);
        Assert.Equal(131072UL, table.FileOffset);
        Assert.Equal(1UL, table.Entry(0));
        Assert.False(table.IsDirty);
        Assert.Equal(1UL, TableCodec.Decode(table.EncodeAll())[0]);
    }
}
