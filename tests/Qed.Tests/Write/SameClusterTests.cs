using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Write;

/// <summary>
/// Requests that meet on one unallocated cluster: one allocates it, the others wait for that claim to end and then
/// write in place. Claims are reused, so this also checks that a reused claim never releases someone else's wait.
/// </summary>
public class SameClusterTests
{
    /// <summary>Data writes that take a moment, so a claim is still held when the other requests arrive.</summary>
    private sealed class SlowWrites(MemoryStorage file) : ForwardingStorage(file)
    {
        public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            await Task.Delay(2, ct);
            await Inner.WriteAsync(offset, data, ct);
        }
    }

    [Fact]
    public async Task ConcurrentWritesIntoOneNewClusterAllLand()
    {
        const int cluster = 64 * 1024, block = 4096, clusters = 40;
        var memory = new MemoryStorage("img");
        await QedImage.CreateAsync(memory, new QedCreateOptions { Size = 16L << 20 });
        var expected = new byte[clusters * cluster];
        await using (var image = await QedImage.OpenAsync(new SlowWrites(memory)))
        {
            for (int c = 0; c < clusters; c++)
            {
                // Every block of the cluster at once, so most of them find the cluster claimed by another.
                var writes = new Task[cluster / block];
                for (int b = 0; b < writes.Length; b++)
                {
                    long offset = (long)c * cluster + b * block;
                    var data = Enumerable.Repeat((byte)(c * 16 + b + 1), block).ToArray();
                    data.CopyTo(expected, offset);
                    writes[b] = Task.Run(async () => await image.WriteAsync(offset, data));
                }
                var all = Task.WhenAll(writes);
                Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))));
                await all;
            }
            var back = new byte[expected.Length];
            await image.ReadAsync(0, back);
            Assert.Equal(expected, back);
            await image.FlushAsync();
        }
        var check = await Qed.Check.QedChecker.CheckAsync(new MemoryStorage(memory.ToArray()), Qed.Check.CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
    }
}
