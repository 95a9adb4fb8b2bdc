using Qed.Check;

namespace Qed.Tests.Check;

public class SparseBitmapTests
{
    [Fact]
    public void RangesAreSetAndCountedAcrossChunks()
    {
        var bits = new SparseBitmap();
        long chunk = 1 << 15;
        bits.SetRange(chunk - 2, 4); // two bits in each of two chunks
        Assert.Equal(4, bits.Count);
        Assert.Equal(4, bits.CountSet(chunk - 10, 20));
        Assert.Equal(2, bits.CountSet(chunk, 16));
        Assert.Equal(0, bits.CountSet(5L << 40, 16)); // a chunk never made costs nothing and holds nothing
        Assert.False(bits.Set(chunk + 1));            // already set
        bits.SetRange(chunk + 1, 2);                  // overlapping: only the new bit counts
        Assert.Equal(5, bits.Count);
    }
}
