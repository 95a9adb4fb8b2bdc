using Qed.Check;
using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>
/// Random writes and zero writes from several concurrent workers against an in-memory model, on small geometries so
/// that table boundaries, new tables, cache eviction and shared clusters are all exercised; then the image is read
/// back, reopened, read again and checked.
/// </summary>
public class QedImageModelTests
{
    public static TheoryData<uint, uint, bool, long> Cases => new()
    {
        // cluster size, table size, with backing file, L2 cache budget
        { 4096, 2, false, 64L << 20 },
        { 4096, 2, true, 64L << 20 },
        { 4096, 2, false, 3 * 8192 },    // budget below the minimum: constant eviction
        { 4096, 16, true, 5 * 65536 },
        { 65536, 4, false, 64L << 20 },
        { 65536, 4, true, 64L << 20 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task ConcurrentRandomWorkloadMatchesModel(uint clusterSize, uint tableSize, bool withBacking, long cacheBudget)
    {
        const int Workers = 4;
        long size = 24L << 20;
        var rnd = new Random((int)(clusterSize ^ tableSize * 31 ^ (withBacking ? 7 : 0) ^ cacheBudget));
        var model = new byte[size];

        DiskImage? backing = null;
        if (withBacking)
        {
            var baseContent = new byte[size - (3 << 20)]; // shorter than the image: zeroes past its end
            rnd.NextBytes(baseContent);
            baseContent.CopyTo(model, 0);
            backing = new RawImage(new MemoryStorage(baseContent, "base", access: FileAccess.Read), readOnly: true);
        }

        var file = new MemoryStorage("img");
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = size, ClusterSize = (int)clusterSize, TableSize = (int)tableSize, BackingFile = withBacking ? "base" : null });
        var options = new ImageOpenOptions { L2CacheBytes = cacheBudget };
        var image = await QedImage.OpenAsync(file, options, (_, _, _) => Task.FromResult(backing!));

        // Worker w owns the 512-byte sectors s with s % Workers == w, so workers share clusters and tables but never
        // bytes: every interleaving has one right answer.
        async Task Work(int w, int seed)
        {
            var r = new Random(seed);
            for (int op = 0; op < 150; op++)
            {
                long sector = r.NextInt64(size / 512 / Workers) * Workers + w;
                int sectors = r.Next(1, 1 + (r.Next(4) == 0 ? 64 : 8));
                long offset = sector * 512;
                if (r.Next(5) == 0)
                {
                    // A zero write of whole clusters owned by nobody else would break ownership; keep zero writes to
                    // this worker's sectors, one at a time.
                    for (int i = 0; i < sectors && offset + (long)i * Workers * 512 < size; i++)
                    {
                        long at = offset + (long)i * Workers * 512;
                        await image.WriteZeroesAsync(at, 512);
                        lock (model) Array.Clear(model, (int)at, 512);
                    }
                }
                else
                {
                    for (int i = 0; i < sectors && offset + (long)i * Workers * 512 < size; i++)
                    {
                        long at = offset + (long)i * Workers * 512;
                        var data = new byte[512];
                        r.NextBytes(data);
                        await image.WriteAsync(at, data);
                        lock (model) data.CopyTo(model, at);
                    }
                }
                if (r.Next(40) == 0) await image.FlushAsync();
            }
        }

        await Task.WhenAll(Enumerable.Range(0, Workers).Select(w => Task.Run(() => Work(w, rnd.Next()))));
        // Big writes across cluster and table boundaries, then whole-cluster zeroes, from one writer.
        for (int i = 0; i < 6; i++)
        {
            long offset = rnd.NextInt64(size - (3 << 20));
            var data = new byte[rnd.Next(1, 3 << 20)];
            rnd.NextBytes(data);
            await image.WriteAsync(offset, data);
            data.CopyTo(model, offset);
            long zeroAt = rnd.NextInt64(size - (1 << 20));
            int zeroLength = rnd.Next(1, 1 << 20);
            await image.WriteZeroesAsync(zeroAt, zeroLength);
            Array.Clear(model, (int)zeroAt, zeroLength);
        }
        await AssertContent(image, model);
        await image.DisposeAsync();

        var reopened = await QedImage.OpenAsync(file, options, (_, _, _) => Task.FromResult(backing!));
        await AssertContent(reopened, model);
        Assert.False(reopened.IsDirty, "a clean close leaves NEED_CHECK clear");
        await reopened.DisposeAsync();

        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
        Assert.Equal(0, check.CheckErrors);
    }

    private static async Task AssertContent(DiskImage image, byte[] model)
    {
        var buffer = new byte[model.Length];
        await image.ReadAsync(0, buffer);
        int mismatch = buffer.AsSpan().CommonPrefixLength(model);
        Assert.True(mismatch == model.Length, $"content differs from the model at offset {mismatch}");
    }
}
