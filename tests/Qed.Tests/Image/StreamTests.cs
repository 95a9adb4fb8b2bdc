using Qed.Check;
using Qed.Formats.Raw;
using Qed.Operations;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>Streaming copies the backing chain in while a writer keeps writing, then detaches the backing file.</summary>
public class StreamTests
{
    [Theory]
    [InlineData(4096u)]
    [InlineData(65536u)]
    public async Task StreamWhileWritingKeepsEveryByteAndDetaches(uint clusterSize)
    {
        const long size = 16L << 20;
        var rnd = new Random((int)clusterSize);
        var baseContent = new byte[size - (2 << 20)]; // shorter than the image
        rnd.NextBytes(baseContent);
        for (int i = 0; i < 40; i++) Array.Clear(baseContent, rnd.Next(baseContent.Length - 200_000), 200_000); // holes
        var model = new byte[size];
        baseContent.CopyTo(model, 0);
        var backing = new RawImage(new MemoryStorage(baseContent, "base", access: FileAccess.Read), readOnly: true);
        var file = new MemoryStorage("img");
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = size, ClusterSize = (int)clusterSize, BackingFile = "base", BackingFormat = ImageFormat.Raw });
        var image = await QedImage.OpenAsync(file, null, (_, _, _) => Task.FromResult<DiskImage>(backing));

        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var r = new Random(5);
            int writes = 0;
            while (!stop.IsCancellationRequested || writes < 50)
            {
                long offset = r.NextInt64(size - 100_000);
                var data = new byte[r.Next(1, 100_000)];
                r.NextBytes(data);
                await image.WriteAsync(offset, data);
                lock (model) data.CopyTo(model, offset);
                writes++;
            }
        });
        await StreamOperation.RunAsync(image);
        stop.Cancel();
        await writer;

        Assert.Null(image.Backing);
        Assert.Null(image.BackingFilename);
        Assert.False(image.Header.HasBackingFile);
        var back = new byte[size];
        await image.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(model), $"differs at {back.AsSpan().CommonPrefixLength(model)}");
        await image.DisposeAsync();

        var reopened = await QedImage.OpenAsync(file); // no backing opener: the header must not need one
        Assert.False(reopened.Header.HasBackingFile);
        await reopened.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(model), $"after reopen, differs at {back.AsSpan().CommonPrefixLength(model)}");
        await reopened.DisposeAsync();
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
    }
}
