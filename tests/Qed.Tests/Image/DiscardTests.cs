using Qed.Check;
using Qed.Formats.Raw;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>Discard punches out whole data clusters, which keep their mapping and read as zeroes (over a backing file
/// too), and leaves partial clusters alone; the image stays check-clean: no leak, no corruption.</summary>
public class DiscardTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WholeClustersReadAsZeroesAndTheImageStaysClean(bool withBacking)
    {
        const int cs = 4096;
        const long size = 8L << 20;
        var rnd = new Random(withBacking ? 11 : 12);
        var model = new byte[size];
        DiskImage? backing = null;
        if (withBacking)
        {
            var baseContent = new byte[size];
            rnd.NextBytes(baseContent);
            baseContent.CopyTo(model, 0);
            backing = new RawImage(new MemoryStorage(baseContent, "base", access: FileAccess.Read), readOnly: true);
        }
        var file = new MemoryStorage("img");
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = size, ClusterSize = cs, TableSize = 2, BackingFile = withBacking ? "base" : null });
        var image = await QedImage.OpenAsync(file, null, (_, _, _) => Task.FromResult(backing!));
        var allocated = new HashSet<long>(); // guest clusters mapped to data clusters
        long discarded = 0;
        for (int op = 0; op < 300; op++)
        {
            long offset = rnd.NextInt64(size - 70000);
            int length = rnd.Next(1, 70000);
            if (rnd.Next(3) == 0)
            {
                await image.DiscardAsync(offset, length);
                for (long c = (offset + cs - 1) / cs; (c + 1) * cs <= offset + length; c++)
                {
                    // A whole data cluster is punched out and reads as zeroes (its mapping stays); an unallocated one
                    // keeps showing what lies beneath (its old content, which discard allows).
                    if (allocated.Contains(c))
                    {
                        discarded++;
                        Array.Clear(model, (int)(c * cs), cs);
                    }
                }
            }
            else
            {
                var data = new byte[length];
                rnd.NextBytes(data);
                await image.WriteAsync(offset, data);
                data.CopyTo(model, offset);
                for (long c = offset / cs; c * cs < offset + length; c++) allocated.Add(c);
            }
        }
        var back = new byte[size];
        await image.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(model), $"differs at {back.AsSpan().CommonPrefixLength(model)}");
        await image.DisposeAsync();

        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
        Assert.Equal(allocated.Count, check.AllocatedClusters);
        Assert.True(discarded > 0, "the workload discarded no data cluster");
    }
}
