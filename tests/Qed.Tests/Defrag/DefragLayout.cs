using System.Buffers.Binary;
using Qed.Check;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Defrag;

/// <summary>Builds scattered images and checks what a defragmented one must look like.</summary>
internal static class DefragLayout
{
    /// <summary>
    /// Fills a model and an image in a shuffled cluster order: whole-cluster writes, partial writes, zero clusters,
    /// and discards (which leave leaked, punched clusters behind).
    /// </summary>
    public static async Task ScatterAsync(QedImage image, byte[] model, int seed, bool withDiscards = true)
    {
        var rnd = new Random(seed);
        int cs = image.ClusterSize;
        long clusters = image.Size / cs;
        var order = new List<long>();
        for (long c = 0; c < clusters; c++) if (rnd.Next(10) < 7) order.Add(c);
        rnd.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(order));
        foreach (long c in order)
        {
            long at = c * cs;
            int roll = rnd.Next(20);
            if (roll == 0)
            {
                await image.WriteZeroesAsync(at, cs);
                Array.Clear(model, (int)at, cs);
                continue;
            }
            int offset = roll == 1 ? rnd.Next(cs / 512) * 512 : 0;
            int length = roll == 1 ? Math.Min(cs - offset, 512 * rnd.Next(1, 8)) : cs;
            var data = new byte[length];
            rnd.NextBytes(data);
            await image.WriteAsync(at + offset, data);
            data.CopyTo(model, at + offset);
        }
        if (!withDiscards) return;
        foreach (long c in order.Take(order.Count / 10))
        {
            await image.DiscardAsync(c * cs, cs);
            // Without a backing file a discarded cluster reads zeroes; with one it becomes a zero cluster.
            Array.Clear(model, (int)(c * cs), cs);
        }
    }

    /// <summary>
    /// Asserts the defragmented layout: the L2 tables right after L1 in L1 order, the data clusters after them in
    /// guest order with no gap, and the file exactly that long. Returns the number of data clusters.
    /// </summary>
    public static async Task<long> AssertDefragmentedAsync(QedImage image, IBlockStorage storage)
    {
        var h = image.Header;
        long cs = h.ClusterSize;
        long tableBytes = cs * h.TableSize;
        Assert.Equal(cs, (long)h.L1TableOffset); // as created: header cluster, then L1
        var l1 = new byte[tableBytes];
        await storage.ReadAsync((long)h.L1TableOffset, l1);
        long next = (long)h.L1TableOffset + tableBytes;
        for (int i = 0; i < l1.Length / 8; i++)
        {
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(l1.AsSpan(i * 8));
            if (offset == 0) continue;
            Assert.True(offset == next, $"L2 table {i} at 0x{offset:x}, expected 0x{next:x}");
            next += tableBytes;
        }
        long dataClusters = 0;
        for (long at = 0; at < image.Size;)
        {
            var extent = await image.GetLayerExtentAsync(at, image.Size - at);
            if (extent.Kind == ExtentKind.Data)
            {
                Assert.True(extent.FileOffset == next, $"guest 0x{at:x} at file 0x{extent.FileOffset:x}, expected 0x{next:x}");
                next += extent.Length;
                dataClusters += extent.Length / cs;
            }
            at += extent.Length;
        }
        Assert.Equal(next, storage.Length);
        return dataClusters;
    }

    /// <summary>qemu-style check: no corruption, no leak.</summary>
    public static async Task AssertCleanAsync(IBlockStorage storage, bool leaksAllowed = false)
    {
        var result = await QedChecker.CheckAsync(storage, CheckRepair.None);
        Assert.True(result.Corruptions == 0 && result.CheckErrors == 0, string.Join("; ", result.Messages));
        if (!leaksAllowed) Assert.True(result.Leaks == 0, $"{result.Leaks} leaked clusters: {string.Join("; ", result.Messages)}");
    }
}
