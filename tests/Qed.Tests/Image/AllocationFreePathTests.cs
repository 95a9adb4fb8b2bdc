using Qed.Storage;

namespace Qed.Tests.Image;

/// <summary>
/// The steady-state read and in-place write paths allocate nothing per request. Memory storage completes
/// synchronously, so everything runs on this thread and the thread's allocation counter sees all of it.
/// </summary>
public class AllocationFreePathTests
{
    [Fact]
    public async Task CachedReadsAndInPlaceWritesAllocateNothing()
    {
        const long size = 64L << 20;
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = size });
        await using var image = await QedImage.OpenAsync(storage);
        var buffer = new byte[4096];
        for (long at = 0; at < size; at += 1 << 20) await image.WriteAsync(at, new byte[1 << 20]);

        long offset = 0;
        void Run(int n)
        {
            for (int i = 0; i < n; i++)
            {
                offset = (offset + 4096 * 1021) % size;
                var read = image.ReadAsync(offset, buffer);
                if (!read.IsCompletedSuccessfully) throw new InvalidOperationException("memory storage completes synchronously");
                var write = image.WriteAsync(offset, buffer);
                if (!write.IsCompletedSuccessfully) throw new InvalidOperationException("memory storage completes synchronously");
            }
        }
        Run(100); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run(10_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"20,000 requests allocated {allocated} bytes");
    }
}
