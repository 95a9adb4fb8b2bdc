using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Defrag;

/// <summary><see cref="QedImage.ResizeAsync"/> on an open image: the size rules, and what grown and shrunk ranges read.</summary>
public class OnlineResizeTests
{
    [Fact]
    public async Task GrowingHidesALongerBackingFileAndShrinkingNeedsTheFlag()
    {
        var content = new byte[8L << 20];
        new Random(1).NextBytes(content);
        var backing = new MemoryStorage(content, "base.raw", access: FileAccess.Read);
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 3L << 20, ClusterSize = 4096, TableSize = 2, BackingFile = "base.raw", BackingFormat = ImageFormat.Raw });
        await using var image = await QedImage.OpenAsync(storage, null, (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true)));
        var model = new byte[8L << 20];
        content.AsSpan(0, 3 << 20).CopyTo(model);

        var before = storage.ToArray();
        await Assert.ThrowsAsync<ArgumentException>(() => image.ResizeAsync(2L << 20, new ResizeOptions()));
        await Assert.ThrowsAsync<ArgumentException>(() => image.ResizeAsync((4L << 20) + 100, new ResizeOptions { AllowShrink = true }));
        Assert.Equal(before, storage.ToArray());
        Assert.Equal(3L << 20, image.Size);

        await image.ResizeAsync(8L << 20, new ResizeOptions());
        Assert.Equal(8L << 20, image.Size);
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(image));
        Assert.Equal(8UL << 20, image.Header.ImageSize);

        // Shrink into the middle of a cluster, grow back: zeroes past the cut, never the dropped data or the backing file.
        var data = new byte[1 << 20];
        new Random(2).NextBytes(data);
        await image.WriteAsync(5L << 20, data);
        data.CopyTo(model, 5L << 20);
        long cut = (5L << 20) + 4096 * 10 + 512;
        await image.ResizeAsync(cut, new ResizeOptions { AllowShrink = true });
        Assert.Equal(cut, image.Size);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await image.ReadAsync(cut, new byte[512]));
        await image.ResizeAsync(8L << 20, new ResizeOptions());
        Array.Clear(model, (int)cut, model.Length - (int)cut);
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(image));
        await image.FlushAsync();
        await DefragLayout.AssertCleanAsync(storage, leaksAllowed: true);
    }
}
