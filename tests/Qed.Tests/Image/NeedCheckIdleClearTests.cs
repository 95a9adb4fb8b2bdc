using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Tests.Image;

/// <summary>
/// NEED_CHECK is cleared once the image goes idle after a flush, not at every flush: a write-flush loop pays one sync
/// per flush, and the bit still ends up clear on disk.
/// </summary>
public class NeedCheckIdleClearTests
{
    /// <summary>Counts the syncs and header writes that reach the storage under it.</summary>
    private sealed class CountingStorage(IBlockStorage file) : ForwardingStorage(file)
    {
        public int Flushes;
        public int HeaderWrites;
        public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            if (offset == 0) Interlocked.Increment(ref HeaderWrites);
            return Inner.WriteAsync(offset, data, ct);
        }
        public override ValueTask FlushAsync(CancellationToken ct = default)
        {
            Interlocked.Increment(ref Flushes);
            return Inner.FlushAsync(ct);
        }
    }

    private static async Task<bool> NeedCheckOnDiskAsync(IBlockStorage file)
    {
        var header = new byte[Qed.Formats.Qed.QedHeader.Size];
        await file.ReadAsync(0, header);
        return Qed.Formats.Qed.QedHeader.Parse(header).NeedsCheck;
    }

    [Fact]
    public async Task WriteFlushLoopsPayOneSyncPerFlushAndTheBitClearsWhenIdle()
    {
        var memory = new MemoryStorage("img");
        await QedImage.CreateAsync(memory, new QedCreateOptions { Size = 64L << 20 });
        var file = new CountingStorage(memory);
        var image = await QedImage.OpenAsync(file, null, null, new QedTuning { NeedCheckClearDelay = TimeSpan.FromMilliseconds(300) });
        var data = new byte[4096];
        const int rounds = 50;
        for (int i = 0; i < rounds; i++)
        {
            data.AsSpan().Fill((byte)i);
            await image.WriteAsync(i * 65536L, data); // each allocates a cluster
            await image.FlushAsync();
        }
        Assert.True(await NeedCheckOnDiskAsync(memory), "the bit stays set while the image is busy");
        // Set once (a header write and a sync), then one sync per flush; clearing at every flush would add three more.
        Assert.InRange(file.Flushes, rounds, rounds + 3);
        Assert.Equal(1, file.HeaderWrites);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (await NeedCheckOnDiskAsync(memory) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.False(await NeedCheckOnDiskAsync(memory), "the bit is cleared once the image is idle");
        Assert.False(image.IsDirty);

        // A new allocation sets it again; close clears it at once.
        await image.WriteAsync(60L << 20, data);
        Assert.True(await NeedCheckOnDiskAsync(memory));
        await image.DisposeAsync();
        Assert.False(await NeedCheckOnDiskAsync(memory), "a clean close leaves NEED_CHECK clear");
    }

    [Fact]
    public async Task CloseRightAfterAFlushStopsTheTimerAndClears()
    {
        var memory = new MemoryStorage("img");
        await QedImage.CreateAsync(memory, new QedCreateOptions { Size = 64L << 20 });
        for (int i = 0; i < 20; i++)
        {
            // The timer may fire during the close.
            var image = await QedImage.OpenAsync(memory, null, null, new QedTuning { NeedCheckClearDelay = TimeSpan.FromMilliseconds(i) });
            await image.WriteAsync(i * 65536L, new byte[512]);
            await image.FlushAsync();
            await image.DisposeAsync();
            Assert.False(await NeedCheckOnDiskAsync(memory), $"round {i}");
        }
    }
}
