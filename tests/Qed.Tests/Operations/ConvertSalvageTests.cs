using Qed.Formats.Raw;
using Qed.Operations;
using Qed.Storage;

namespace Qed.Tests.Operations;

/// <summary>
/// Convert's <c>--salvage</c> (<see cref="ConvertOptions.OnReadError"/>): sectors whose reads fail are copied as
/// zeroes and reported one by one, everything readable is copied; without it the first failure fails the copy.
/// </summary>
public class ConvertSalvageTests
{
    /// <summary>Storage whose reads fail (EIO) when they touch one of the given 512-byte sectors.</summary>
    private sealed class BadSectors(IBlockStorage inner, params long[] badOffsets) : ForwardingStorage(inner)
    {
        public override ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) =>
            badOffsets.Any(bad => bad < offset + buffer.Length && offset < bad + 512)
                ? ValueTask.FromException(new IOException("Input/output error"))
                : base.ReadAsync(offset, buffer, ct);
    }

    private static byte[] Pattern(int size)
    {
        var bytes = new byte[size];
        for (int i = 0; i < size; i++) bytes[i] = (byte)(i % 251 + 1);
        return bytes;
    }

    [Fact]
    public async Task BadSectorsBecomeZeroesAndAreEachReported()
    {
        const int Size = 4 << 20;
        byte[] data = Pattern(Size);
        long[] bad = [1 << 20, (2 << 20) + 512, (2 << 20) + 1024, Size - 512];
        await using var source = new RawImage(new BadSectors(new MemoryStorage(data), bad), readOnly: true);
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        var reported = new List<long>();
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { OnReadError = (at, _) => { lock (reported) reported.Add(at); } });

        Assert.Equal(bad, reported.Order());
        byte[] copied = new byte[Size];
        await target.ReadAsync(0, copied);
        byte[] expected = (byte[])data.Clone();
        foreach (long at in bad) Array.Clear(expected, (int)at, 512);
        Assert.Equal(expected, copied);
    }

    [Fact]
    public async Task WithoutSalvageABadSectorFailsTheCopy()
    {
        byte[] data = Pattern(1 << 20);
        await using var source = new RawImage(new BadSectors(new MemoryStorage(data), 4096), readOnly: true);
        await using var target = new RawImage(new MemoryStorage(new byte[1 << 20]), readOnly: false);
        await Assert.ThrowsAnyAsync<IOException>(() => ConvertOperation.CopyAsync(source, target));
    }
}
