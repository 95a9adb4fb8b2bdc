using Qed.Formats.Qcow2;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>The overlap guard: the map knows every table of a new image, checks name the entry that points where,
/// and the first corruption sets the corrupt bit (version 3 only) and is the one kept.</summary>
public sealed class Qcow2OverlapGuardTests
{
    [Fact]
    public async Task TheMapHoldsTheHeaderAndEveryTableAndNothingElse()
    {
        var c = await Qcow2Components.NewAsync();
        Assert.True(c.Guard.OverlapsAny(100, 1, out var kind, out long cluster));
        Assert.Equal((Qcow2Metadata.Header, 0L), (kind, cluster));
        Assert.True(c.Guard.OverlapsAny((long)c.Header.L1TableOffset, 512, out kind, out _));
        Assert.Equal(Qcow2Metadata.ActiveL1, kind);
        Assert.True(c.Guard.OverlapsAny((long)c.Header.RefcountTableOffset + 8, 8, out kind, out _));
        Assert.Equal(Qcow2Metadata.RefcountTable, kind);
        Assert.True(c.Guard.OverlapsAny(c.Refcounts.BlockOffset(0, c.Storage.Length), 1, out kind, out _));
        Assert.Equal(Qcow2Metadata.RefcountBlock, kind);
        Assert.False(c.Guard.OverlapsAny(c.Storage.Length, 1 << 20, out _, out _)); // past the end: nothing yet
        c.Guard.Add(c.Storage.Length / 512 + 5, Qcow2Metadata.ActiveL2);
        Assert.True(c.Guard.OverlapsAny(c.Storage.Length, 1 << 20, out kind, out cluster));
        Assert.Equal((Qcow2Metadata.ActiveL2, c.Storage.Length / 512 + 5), (kind, cluster));
    }

    [Fact]
    public async Task SoundTablesPassTheirChecks()
    {
        var c = await Qcow2Components.NewAsync();
        await c.Guard.CheckL1Async();
        await c.Guard.CheckRefTableAsync();
        await c.Guard.CheckRefBlockAsync(0, c.Refcounts.BlockOffset(0, c.Storage.Length));
        await c.Guard.CheckNewClustersAsync("for a test", c.Storage.Length, 4096);
        Assert.Null(c.Failure.Failure);
    }

    [Fact]
    public async Task AnL2TableOnTheRefcountTableIsRefusedNamingItsL1Entry()
    {
        var c = await Qcow2Components.NewAsync();
        long refTable = (long)c.Header.RefcountTableOffset;
        c.L1[2] = (ulong)refTable | Qcow2Entries.CopiedFlag;
        var table = new Qcow2L2Table(2, refTable, new ulong[64]);
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Guard.CheckL2ForUpdateAsync(table));
        Assert.Equal("L1[2]", e.Field);
        Assert.Equal((long)c.Header.L1TableOffset + 16, e.FileOffset);
        Assert.Contains($"overlaps the refcount table at file offset 0x{refTable:x}", e.Message);
        Assert.Contains("marked corrupt", e.Message);
        Assert.Same(e, c.Failure.Failure);
    }

    [Fact]
    public async Task ARefcountBlockOnTheL1TableIsRefusedNamingItsTableEntry()
    {
        var c = await Qcow2Components.NewAsync();
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Guard.CheckRefBlockAsync(1, (long)c.Header.L1TableOffset));
        Assert.Equal("refcount_table[1]", e.Field);
        Assert.Contains("overlaps the active L1 table", e.Message);
    }

    [Theory]
    [InlineData(3, true)]
    [InlineData(2, false)]
    public async Task TheFirstCorruptionSetsTheCorruptBitInVersion3Only(int version, bool bitSet)
    {
        var c = await Qcow2Components.NewAsync(version: version);
        long l1 = (long)c.Header.L1TableOffset;
        var first = await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Guard.CheckNewClustersAsync("for a test", l1, 512));
        Assert.Equal("l1_table_offset", first.Field);
        ulong features = await Qcow2Components.U64Async(c.Storage, Qcow2Header.IncompatibleOffset);
        Assert.Equal(bitSet, (features & (ulong)Qcow2IncompatibleFeatures.Corrupt) != 0);
        await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Guard.CheckNewClustersAsync("again", 0, 512));
        Assert.Same(first, c.Failure.Failure); // the first is the one kept
    }
}
