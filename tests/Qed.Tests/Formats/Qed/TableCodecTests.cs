using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Tests.Formats.Qed;

public class TableCodecTests
{
    [Fact]
    public void EntriesAreLittleEndianU64()
    {
        var bytes = TableCodec.Encode([0x0102030405060708UL, 1UL, ulong.MaxValue], 0, 3);
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255 }, bytes);
        Assert.Equal([0x0102030405060708UL, 1UL, ulong.MaxValue], TableCodec.Decode(bytes));
    }

    [Fact]
    public void EncodeTakesTheRangeAskedFor()
    {
        ulong[] entries = [10, 11, 12, 13, 14];
        Assert.Equal([11UL, 12UL], TableCodec.Decode(TableCodec.Encode(entries, 1, 2)));
    }

    [Theory]
    [InlineData(0, 0, 1024, 0, 64)]
    [InlineData(63, 63, 1024, 0, 64)]
    [InlineData(64, 64, 1024, 64, 64)]
    [InlineData(63, 64, 1024, 0, 128)]
    [InlineData(1000, 1023, 1024, 960, 64)]
    [InlineData(5, 900, 1024, 0, 960)]
    [InlineData(2, 2, 10, 0, 10)]      // a table shorter than a sector is written whole
    [InlineData(70, 70, 100, 64, 36)]  // the last sector is clipped at the table's end
    public void SectorRangeCoversWholeSectorsHoldingTheEntries(int low, int high, int count, int start, int length)
    {
        var (s, n) = TableCodec.SectorRange(low, high, count);
        Assert.Equal((start, length), (s, n));
        Assert.True(s <= low && s + n > high);
        Assert.True(s % TableCodec.EntriesPerSector == 0);
    }

    [Fact]
    public async Task ReadDecodesATableFromStorage()
    {
        var memory = new MemoryStorage();
        await memory.WriteAsync(8192, TableCodec.Encode([7, 0, 65536], 0, 3));
        var entries = await TableCodec.ReadAsync(memory, 8192, 32, CancellationToken.None);
        Assert.Equal(new ulong[] { 7, 0, 65536, 0 }, entries);
    }
}
