using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Operations;

/// <summary>In-memory images and a byte-array model of what they must read as.</summary>
internal static class OperationFixtures
{
    /// <summary>A new, empty QED image in memory, optionally over a raw backing image.</summary>
    public static async Task<QedImage> NewQedAsync(long size, uint clusterSize = 65536, uint tableSize = 4, MemoryStorage? backing = null)
    {
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions
        {
            Size = size, ClusterSize = (int)clusterSize, TableSize = (int)tableSize,
            BackingFile = backing is null ? null : "base.raw", BackingFormat = backing is null ? null : ImageFormat.Raw,
        });
        return await QedImage.OpenAsync(storage, null,
            backing is null ? null : (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true)));
    }

    /// <summary>Random writes, zero writes and untouched ranges, applied to the image and the model alike.</summary>
    public static async Task ScribbleAsync(DiskImage image, byte[] model, int seed, int operations)
    {
        var rnd = new Random(seed);
        for (int i = 0; i < operations; i++)
        {
            long offset = rnd.NextInt64(0, model.Length - 1);
            int length = (int)Math.Min(model.Length - offset, rnd.Next(1, 400_000));
            if (rnd.Next(4) == 0)
            {
                await image.WriteZeroesAsync(offset, length);
                Array.Clear(model, (int)offset, length);
            }
            else
            {
                var data = new byte[length];
                // Some writes are all zeroes as data, which convert must detect.
                if (rnd.Next(5) != 0) rnd.NextBytes(data);
                await image.WriteAsync(offset, data);
                data.CopyTo(model, offset);
            }
        }
    }

    public static async Task<byte[]> ReadAllAsync(DiskImage image)
    {
        var buffer = new byte[image.Size];
        await image.ReadAsync(0, buffer);
        return buffer;
    }
}
