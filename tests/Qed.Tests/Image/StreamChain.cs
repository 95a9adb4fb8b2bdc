using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>
/// An in-memory backing chain base.raw (8 MiB) &lt;- m1.qed (6 MiB, shorter than the rest) &lt;- m2.qed &lt;- top.qed
/// (8 MiB), each layer with data, zero writes and discards over the one below, opened by name as the headers say.
/// </summary>
internal sealed class StreamChain
{
    public const long Size = 8L << 20;
    public readonly Dictionary<string, byte[]> Files = new();

    public static async Task<StreamChain> BuildAsync(int seed, uint clusterSize = 4096)
    {
        var chain = new StreamChain();
        var rnd = new Random(seed);
        var raw = new byte[Size];
        rnd.NextBytes(raw);
        for (int i = 0; i < 6; i++) Array.Clear(raw, rnd.Next((int)Size - 300_000), 300_000);
        chain.Files["base.raw"] = raw;
        await chain.AddLayerAsync("m1.qed", "base.raw", "raw", 6L << 20, clusterSize, rnd);
        await chain.AddLayerAsync("m2.qed", "m1.qed", null, Size, clusterSize, rnd);
        await chain.AddLayerAsync("top.qed", "m2.qed", null, Size, clusterSize, rnd);
        return chain;
    }

    private async Task AddLayerAsync(string name, string backing, string? backingFormat, long size, uint clusterSize, Random rnd)
    {
        var storage = new MemoryStorage(name);
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = size, ClusterSize = (int)clusterSize, TableSize = 2, BackingFile = backing, BackingFormat = ImageFormatNames.FromName(backingFormat) });
        await using (var image = await QedImage.OpenAsync(storage, null, OpenAsync))
        {
            for (int i = 0; i < 12; i++)
            {
                long offset = rnd.NextInt64(size - 400_000);
                int length = rnd.Next(1, 400_000);
                switch (rnd.Next(4))
                {
                    case 0: await image.WriteZeroesAsync(offset, length); break;
                    case 1: await image.DiscardAsync(offset, length); break;
                    default:
                        var data = new byte[length];
                        rnd.NextBytes(data);
                        await image.WriteAsync(offset, data);
                        break;
                }
            }
        }
        Files[name] = storage.ToArray();
    }

    /// <summary>Opens a layer read-only by the name a header gives (the backing opener of <see cref="QedImage.OpenAsync"/>).</summary>
    public async Task<DiskImage> OpenAsync(string name, ImageFormat? format, CancellationToken ct)
    {
        var storage = new MemoryStorage(Files[name], name, access: FileAccess.Read);
        if (name.EndsWith(".raw", StringComparison.Ordinal)) return new RawImage(storage, readOnly: true);
        return await QedImage.OpenAsync(storage, new ImageOpenOptions { ReadOnly = true }, OpenAsync, ct);
    }

    /// <summary>Opens <paramref name="top"/> read-write over the chain its header names.</summary>
    public Task<QedImage> OpenTopAsync(IBlockStorage top, bool readOnly = false) =>
        QedImage.OpenAsync(top, new ImageOpenOptions { ReadOnly = readOnly }, OpenAsync);

    /// <summary>What the whole chain reads, from the top.</summary>
    public async Task<byte[]> ReadAllAsync(IBlockStorage top)
    {
        await using var image = await OpenTopAsync(top, readOnly: true);
        var content = new byte[image.Size];
        await image.ReadAsync(0, content);
        return content;
    }
}
