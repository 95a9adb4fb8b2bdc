using Qed.Formats.Qcow2;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>The refcount table and blocks: every width packs as the specification says, overflow changes nothing,
/// bad table entries are named, and a moved table is linked from the header only when written.</summary>
public sealed class Qcow2RefcountsTests
{
    [Theory]
    [InlineData(0)] [InlineData(1)] [InlineData(2)] [InlineData(3)] [InlineData(4)] [InlineData(5)] [InlineData(6)]
    public async Task EveryWidthHoldsItsRangeWithoutTouchingNeighbours(int order)
    {
        var c = await Qcow2Components.NewAsync(refcountOrder: order);
        var r = c.Refcounts;
        Assert.Equal(1 << order, r.Bits);
        Assert.Equal(512L * 8 / r.Bits, r.PerBlock);
        var block = r.AddNewBlock(7, 0x100000);
        long first = 7 * r.PerBlock;
        ulong max = r.Bits == 64 ? ulong.MaxValue : (1UL << r.Bits) - 1;
        r.Set(block, first + 1, max);
        r.Set(block, first + 2, 1);
        Assert.Equal(0UL, r.Get(block, first));
        Assert.Equal(max, r.Get(block, first + 1));
        Assert.Equal(1UL, r.Get(block, first + 2));
        Assert.Equal(0UL, r.Get(block, first + 3));
        if (r.Bits < 64)
        {
            Assert.Throws<InvalidOperationException>(() => r.Set(block, first + 2, max + 1));
            Assert.Equal(1UL, r.Get(block, first + 2));
        }
        if (order == 4) Assert.Equal(new byte[] { 0, 0, 0xff, 0xff, 0, 1 }, block.Data[..6]); // big-endian 16-bit
        if (order == 0) Assert.Equal(0b0110, block.Data[0]);                                     // bit 0 first
    }

    [Fact]
    public async Task TheFirstBlockCountsTheNewImagesMetadata()
    {
        var c = await Qcow2Components.NewAsync();
        long offset = c.Refcounts.BlockOffset(0, c.Storage.Length);
        Assert.Equal((long)await Qcow2Components.U64Async(c.Storage, (long)c.Header.RefcountTableOffset), offset);
        var block = await c.Refcounts.LoadBlockAsync(0, offset, default);
        Assert.Equal(1UL, c.Refcounts.Get(block, 0)); // the header cluster
        Assert.Equal(-1, c.Refcounts.BlockOffset(1, c.Storage.Length));           // no block yet
        Assert.Equal(-1, c.Refcounts.BlockOffset(c.Refcounts.TableLength, c.Storage.Length)); // beyond the table
    }

    [Theory]
    [InlineData(0x10001UL, "has reserved bits set")]
    [InlineData(0x10200UL, "is not cluster aligned")]
    [InlineData(1UL << 40, "points past the end of the file")]
    public async Task ABadTableEntryIsNamed(ulong entry, string problem)
    {
        var c = await Qcow2Components.NewAsync(clusterSize: 65536);
        c.Refcounts.Link(3, (long)entry);
        var e = Assert.Throws<ImageFormatException>(() => c.Refcounts.BlockOffset(3, c.Storage.Length));
        Assert.Equal("refcount_table[3]", e.Field);
        Assert.Equal((long)c.Header.RefcountTableOffset + 24, e.FileOffset);
        Assert.Contains(problem, e.Message);
        Assert.Contains($"0x{entry:x}", e.Message);
    }

    [Fact]
    public async Task AMovedTableIsLinkedFromTheHeaderWhenWritten()
    {
        var c = await Qcow2Components.NewAsync();
        var r = c.Refcounts;
        int before = r.TableLength;
        int clusters = r.Enlarge(before + 10, "x");
        Assert.True(r.TableLength >= before * 2);
        Assert.Equal(r.TableLength * 8 / 512, clusters);
        Assert.Equal((long)c.Header.RefcountTableOffset, r.TableOffset); // not moved until told where
        r.MoveTable(0x200000, clusters);
        Assert.Equal(c.Header.RefcountTableOffset, await Qcow2Components.U64Async(c.Storage, 48)); // header untouched so far
        await r.WriteTableAsync(default);
        Assert.Equal(0x200000UL, await Qcow2Components.U64Async(c.Storage, 48));
        Assert.Equal((ulong)clusters, await Qcow2Components.U64Async(c.Storage, 56) >> 32);
        Assert.Equal(r.EntryAt(0), await Qcow2Components.U64Async(c.Storage, 0x200000));
        Assert.False(r.TableDirty);
    }

    [Fact]
    public async Task ATableBeyondTheFormatsLimitIsRefused()
    {
        var c = await Qcow2Components.NewAsync();
        var e = Assert.Throws<IOException>(() => c.Refcounts.Enlarge(Qcow2Header.MaxRefcountTableBytes / 8, "big.qcow2"));
        Assert.Contains("'big.qcow2' is full", e.Message);
    }

    [Fact]
    public async Task OnlyDirtyBlocksAreWritten()
    {
        var c = await Qcow2Components.NewAsync();
        var r = c.Refcounts;
        Assert.False(await r.WriteDirtyBlocksAsync(default));
        var block = r.AddNewBlock(1, 0x100000);
        r.Set(block, r.PerBlock, 1);
        Assert.True(await r.WriteDirtyBlocksAsync(default));
        Assert.False(block.Dirty);
        Assert.Equal(1UL << 48, await Qcow2Components.U64Async(c.Storage, 0x100000));
        Assert.False(await r.WriteDirtyBlocksAsync(default));
    }
}
