using Qed.Formats.Qcow2;
using Qed.Storage;
using Qed.Tests.Hostile;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>
/// A corrupt qcow2 L2 entry met by a request surfaces as the exception types QED uses, which every front maps alike
/// (NBD: EIO): <see cref="ImageFormatException"/> naming the entry for the request that meets it, and
/// <see cref="ImageNeedsCheckException"/> for writes refused afterwards once the image is marked corrupt.
/// </summary>
public sealed class Qcow2CorruptEntryTests
{
    /// <summary>A 64 MiB image (64 KiB clusters) with data at 0 and 1 MiB, and the file offset of L2 entry 0.</summary>
    private static async Task<(MemoryStorage S, long Entry0, long L1)> WrittenAsync()
    {
        var s = new MemoryStorage("corrupt.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 64L << 20 });
        await using (var image = await Qcow2Image.OpenAsync(s))
        {
            await image.WriteAsync(0, SampleImages.Filled(65536, 0x11));
            await image.WriteAsync(1 << 20, SampleImages.Filled(65536, 0x22));
        }
        long l1 = (long)await Qcow2Components.U64Async(s, 40);
        long l2 = (long)(await Qcow2Components.U64Async(s, l1) & Qcow2Entries.OffsetMask);
        return (s, l2, l1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnEntryPastTheEndFailsEveryRequestThatMeetsItWithAFormatError(bool readOnly)
    {
        var (s, entry0, _) = await WrittenAsync();
        await Qcow2Components.PutU64Async(s, entry0, 1UL << 30 | Qcow2Entries.CopiedFlag);
        await using var image = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = readOnly });
        var read = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.ReadAsync(0, new byte[4096]));
        Assert.Equal("L2[0][0]", read.Field);
        Assert.Equal(entry0, read.FileOffset);
        Assert.Contains("points past the end of the file", read.Message);
        await Assert.ThrowsAsync<ImageFormatException>(async () => await image.GetLayerExtentAsync(0, 65536));
        var other = new byte[65536];
        await image.ReadAsync(1 << 20, other); // the sound entry still reads
        Assert.All(other, b => Assert.Equal(0x22, b));
        if (readOnly) return;
        var write = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.WriteAsync(0, new byte[4096]));
        Assert.Equal("L2[0][0]", write.Field);
        await Assert.ThrowsAsync<ImageFormatException>(async () => await image.WriteZeroesAsync(0, 65536));
        await Assert.ThrowsAsync<ImageFormatException>(async () => await image.DiscardAsync(0, 65536));
    }

    [Fact]
    public async Task AnEntryOnTheL1TableFailsTheWriteAndThenEveryWriteNeedsACheck()
    {
        var (s, entry0, l1) = await WrittenAsync();
        await Qcow2Components.PutU64Async(s, entry0, (ulong)l1 | Qcow2Entries.CopiedFlag);
        var l1Before = new byte[4096];
        await s.ReadAsync(l1, l1Before);
        await using (var image = await Qcow2Image.OpenAsync(s))
        {
            var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.WriteAsync(0, new byte[4096]));
            Assert.Equal("L2[0][0]", e.Field);
            Assert.Equal(entry0, e.FileOffset);
            Assert.Contains("overlaps the active L1 table", e.Message);
            // Refused afterwards: every write, wherever it lands, and flushes.
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteAsync(8L << 20, new byte[512]));
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteZeroesAsync(1 << 20, 65536));
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.DiscardAsync(1 << 20, 65536));
            await Assert.ThrowsAsync<ImageFormatException>(async () => await image.FlushAsync());
        }
        var l1After = new byte[4096];
        await s.ReadAsync(l1, l1After);
        Assert.Equal(l1Before, l1After); // the L1 table was not overwritten
        Assert.Equal((ulong)Qcow2IncompatibleFeatures.Corrupt, await Qcow2Components.U64Async(s, Qcow2Header.IncompatibleOffset));
    }
}
