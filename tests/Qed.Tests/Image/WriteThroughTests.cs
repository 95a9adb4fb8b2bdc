using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>
/// Under writethrough and directsync a completed write is durable with its metadata: a second, independent open of
/// the file (what a process restart after kill -9 would see) already maps it, without any flush. Under writeback the
/// metadata waits for a flush, which the same probe shows.
/// </summary>
public sealed class WriteThroughTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-wt").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [InlineData(CacheMode.WriteThrough, true)]
    [InlineData(CacheMode.DirectSync, true)]
    [InlineData(CacheMode.WriteBack, false)]
    public async Task CompletedWritesAreOnDiskWithoutAFlushOnlyUnderWriteThrough(CacheMode cache, bool expectVisible)
    {
        string path = Path.Combine(_dir, $"{cache}.qed");
        await QedImage.CreateAsync(path, new QedCreateOptions { Size = 64L << 20 });
        var data = new byte[8192];
        new Random(3).NextBytes(data);
        await using var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { Cache = cache });
        await image.WriteAsync(3 << 20, data);
        await image.WriteZeroesAsync(8 << 20, 1 << 20);

        // Another open of the same file, read-only and shared (-U: the writer still has it open), as a restarted process would see it.
        await using var probe = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true, ForceShare = true });
        var back = new byte[data.Length];
        await probe.ReadAsync(3 << 20, back);
        var zeroRun = await probe.GetLayerExtentAsync(8 << 20, 1 << 20);
        if (expectVisible)
        {
            Assert.True(back.AsSpan().SequenceEqual(data), "a completed write-through write is not on disk");
            Assert.Equal(ExtentKind.Zero, zeroRun.Kind);
        }
        else
        {
            Assert.False(back.AsSpan().SequenceEqual(data), "write-back metadata reached the disk before a flush: the probe cannot tell the modes apart");
            Assert.Equal(ExtentKind.Unallocated, zeroRun.Kind);
        }
    }
}
