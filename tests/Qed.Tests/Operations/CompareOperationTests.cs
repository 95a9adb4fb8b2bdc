using Qed.Formats.Raw;
using Qed.Operations;
using Qed.Storage;

namespace Qed.Tests.Operations;

public class CompareOperationTests
{
    private static RawImage Raw(byte[] bytes) => new(new MemoryStorage(bytes), readOnly: true);

    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData(65535)]
    [InlineData(3_000_001)]
    public async Task NamesTheSectorOfTheFirstDifference(int at)
    {
        const long size = 4 << 20;
        var model = new byte[size];
        await using var image = await OperationFixtures.NewQedAsync(size);
        await OperationFixtures.ScribbleAsync(image, model, at, 10);
        var other = (byte[])model.Clone();
        other[at] ^= 0x5a;
        other[size - 1] ^= 0x5a; // a later difference must not win
        await using var raw = Raw(other);
        var result = await CompareOperation.CompareAsync(image, raw, strict: false);
        Assert.False(result.Identical);
        Assert.Equal(at & ~511L, result.MismatchOffset);
        Assert.True(result.InCommonPart);

        await using var same = Raw(model);
        Assert.True((await CompareOperation.CompareAsync(image, same, strict: false)).Identical);
    }

    [Fact]
    public async Task ExtraPartMustReadAsZeroesUnlessStrict()
    {
        var small = new byte[1 << 20];
        small[5] = 1;
        var large = new byte[2 << 20];
        large[5] = 1;
        await using var a = Raw(small);
        await using var b = Raw(large);
        var loose = await CompareOperation.CompareAsync(a, b, strict: false);
        Assert.True(loose.Identical && loose.SizeMismatch);
        var strict = await CompareOperation.CompareAsync(a, b, strict: true);
        Assert.False(strict.Identical);

        large[(1 << 20) + 777] = 9;
        await using var c = Raw(large);
        var tail = await CompareOperation.CompareAsync(c, a, strict: false);
        Assert.False(tail.Identical);
        Assert.False(tail.InCommonPart);
        Assert.Equal((1L << 20) + 512, tail.MismatchOffset);
    }
}
