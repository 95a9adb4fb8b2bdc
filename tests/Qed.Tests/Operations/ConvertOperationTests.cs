using Qed.Formats.Raw;
using Qed.Operations;
using Qed.Storage;

namespace Qed.Tests.Operations;

public class ConvertOperationTests
{
    [Theory]
    [InlineData(1, 4096u, 2u)]
    [InlineData(2, 65536u, 4u)]
    [InlineData(3, 16384u, 16u)]
    public async Task CopiesContentExactlyWithManyChunksInFlight(int seed, uint targetCluster, uint targetTable)
    {
        const long size = 24 << 20;
        var model = new byte[size];
        await using var source = await OperationFixtures.NewQedAsync(size);
        await OperationFixtures.ScribbleAsync(source, model, seed, 60);
        await using var target = await OperationFixtures.NewQedAsync(size, targetCluster, targetTable);
        var reports = new List<ImageProgress>();
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { Parallelism = 8, ChunkSize = 256 << 10 },
            new SyncProgress(reports));
        Assert.Equal(model, await OperationFixtures.ReadAllAsync(target));
        Assert.Equal(size, reports.Max(r => r.BytesDone));
    }

    [Fact]
    public async Task ZeroDataIsNotAllocated()
    {
        await using var source = await OperationFixtures.NewQedAsync(8 << 20);
        await source.WriteAsync(1 << 20, new byte[2 << 20]);              // zeroes written as data
        await source.WriteAsync(5 << 20, Enumerable.Repeat((byte)7, 4096).ToArray());
        await using var target = await OperationFixtures.NewQedAsync(8 << 20);
        await ConvertOperation.CopyAsync(source, target);
        var data = new List<LayerExtent>();
        for (long offset = 0; offset < target.Size;)
        {
            var e = await target.GetLayerExtentAsync(offset, target.Size - offset);
            if (e.Kind == ExtentKind.Data) data.Add(e);
            offset += e.Length;
        }
        Assert.Equal(5L << 20, Assert.Single(data).Offset);
        Assert.Equal(65536, data[0].Length);
    }

    [Fact]
    public async Task OverExistingContentWritesZeroesToo()
    {
        const long size = 4 << 20;
        var model = new byte[size];
        await using var source = await OperationFixtures.NewQedAsync(size);
        await OperationFixtures.ScribbleAsync(source, model, 7, 20);
        await using var target = await OperationFixtures.NewQedAsync(size);
        await target.WriteAsync(0, Enumerable.Repeat((byte)0xff, (int)size).ToArray());
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { TargetIsZeroed = false });
        Assert.Equal(model, await OperationFixtures.ReadAllAsync(target));
    }

    [Fact]
    public async Task WithABackingFileOnlyDifferencesAreWritten()
    {
        const long size = 4 << 20;
        var baseBytes = new byte[size];
        new Random(5).NextBytes(baseBytes);
        var baseStorage = new MemoryStorage(baseBytes);
        // The source is a flat copy of the base with one changed byte and one zeroed cluster.
        var model = (byte[])baseBytes.Clone();
        model[3_000_000] ^= 0xff;
        Array.Clear(model, 1 << 20, 65536);
        await using var source = new RawImage(new MemoryStorage(model), readOnly: true);
        await using var target = await OperationFixtures.NewQedAsync(size, backing: baseStorage);
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { TargetIsZeroed = false });
        Assert.Equal(model, await OperationFixtures.ReadAllAsync(target));

        var top = new List<LayerExtent>();
        for (long offset = 0; offset < size;)
        {
            var e = await target.GetLayerExtentAsync(offset, size - offset);
            if (e.Kind != ExtentKind.Unallocated) top.Add(e);
            offset += e.Length;
        }
        Assert.Equal(2, top.Count);
        Assert.Equal((1L << 20, 65536L, ExtentKind.Zero), (top[0].Offset, top[0].Length, top[0].Kind));
        Assert.Equal((3_000_000L & ~65535L, 65536L, ExtentKind.Data), (top[1].Offset, top[1].Length, top[1].Kind));
    }

    [Fact]
    public async Task WithASparseBackingFileNothingIsWrittenForTheSameContent()
    {
        const long size = 16 << 20;
        var baseStorage = new MemoryStorage();
        var head = new byte[1 << 20];
        new Random(9).NextBytes(head);
        await baseStorage.WriteAsync(0, head);
        await baseStorage.SetLengthAsync(size);
        var model = new byte[size];
        head.CopyTo(model, 0);
        await using var source = await OperationFixtures.NewQedAsync(size);
        await source.WriteAsync(0, head);
        await using var target = await OperationFixtures.NewQedAsync(size, backing: baseStorage);
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { TargetIsZeroed = false });
        Assert.Equal(model, await OperationFixtures.ReadAllAsync(target));
        var first = await target.GetLayerExtentAsync(0, size);
        Assert.Equal((ExtentKind.Unallocated, size), (first.Kind, first.Length));
    }

    [Fact]
    public async Task RefusesASmallerTarget()
    {
        await using var source = await OperationFixtures.NewQedAsync(2 << 20);
        await using var target = await OperationFixtures.NewQedAsync(1 << 20);
        await Assert.ThrowsAsync<ArgumentException>(() => ConvertOperation.CopyAsync(source, target));
    }

    /// <summary>Progress<T> posts to the thread pool; this records reports as they happen.</summary>
    private sealed class SyncProgress(List<ImageProgress> list) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value)
        {
            lock (list) list.Add(value);
        }
    }
}
