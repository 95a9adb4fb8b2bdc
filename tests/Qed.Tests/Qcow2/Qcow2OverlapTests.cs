using Qed.Formats.Qcow2;
using Qed.Storage;
using Qed.Tests.Formats.Qcow2;

namespace Qed.Tests.Qcow2;

/// <summary>
/// Each overlap check on its own: a corrupt pointer at other metadata fails the write that would follow it with an
/// ImageFormatException naming that pointer, leaves the metadata as it was, sets the corrupt bit (version 3), and makes
/// later writes fail with ImageNeedsCheckException and flushes with ImageFormatException.
/// </summary>
public sealed class Qcow2OverlapTests
{
    private const ulong Copied = 1UL << 63;

    private sealed record Image(MemoryStorage Storage, long L1, long RefTable, long L2, long RefBlock);

    /// <summary>A 1 GiB image (64 KiB clusters) with guest cluster 0 written: one L2 table.</summary>
    private static async Task<Image> WrittenAsync(int version = 3)
    {
        var s = new MemoryStorage("overlap.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 1L << 30, Version = version });
        await using (var img = await Qcow2Image.OpenAsync(s)) await img.WriteAsync(0, new byte[4096]);
        long l1 = (long)await Qcow2Components.U64Async(s, 40), refTable = (long)await Qcow2Components.U64Async(s, 48);
        return new Image(s, l1, refTable, (long)(await Qcow2Components.U64Async(s, l1) & 0x00ff_ffff_ffff_fe00UL), (long)await Qcow2Components.U64Async(s, refTable));
    }


    /// <summary>Runs <paramref name="write"/>, expects the overlap error, and checks what must hold afterwards.</summary>
    private static async Task AssertRefusedAsync(Image image, Func<Qcow2Image, Task> write, string field, string overlapped, int version = 3, bool readable = true)
    {
        var before = image.Storage.ToArray();
        await using (var img = await Qcow2Image.OpenAsync(image.Storage))
        {
            var e = await Assert.ThrowsAsync<ImageFormatException>(() => write(img));
            Assert.Equal(field, e.Field);
            Assert.Contains($"overlaps the {overlapped}", e.Message);
            Assert.Contains("marked corrupt", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            var later = await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await img.WriteAsync(300L << 20, new byte[512]));
            Assert.Contains("refused", later.Message);
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await img.WriteZeroesAsync(0, 65536));
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await img.DiscardAsync(0, 65536));
            await Assert.ThrowsAsync<ImageFormatException>(async () => await img.FlushAsync());
            if (readable) await img.ReadAsync(0, new byte[4096]); // reads still work
        }
        var after = image.Storage.ToArray();
        if (version >= 3) before[79] |= 2; // the corrupt bit, and nothing else, changed below the old end of the file
        Assert.True(after.Length >= before.Length);
        Assert.Equal(before.Length, before.AsSpan().CommonPrefixLength(after));
        if (version >= 3)
        {
            var reopen = await Assert.ThrowsAsync<ImageFormatException>(() => Qcow2Image.OpenAsync(image.Storage));
            Assert.Contains("marked corrupt", reopen.Message);
        }
    }

    [Theory]
    [InlineData(3)]
    [InlineData(2)]
    public async Task DataEntryPointingAtTheL1TableIsRefused(int version)
    {
        var image = await WrittenAsync(version);
        await Qcow2Components.PutU64Async(image.Storage, image.L2 + 8, Copied | (ulong)image.L1);
        await AssertRefusedAsync(image, async img => await img.WriteAsync(65536 + 100, new byte[10]), "L2[0][1]", "active L1 table", version);
    }

    [Fact]
    public async Task ZeroingADataEntryPointingAtTheRefcountTableIsRefused()
    {
        var image = await WrittenAsync(2); // version 2 zeroes in place
        await Qcow2Components.PutU64Async(image.Storage, image.L2 + 8, Copied | (ulong)image.RefTable);
        await AssertRefusedAsync(image, async img => await img.WriteZeroesAsync(65536, 65536), "L2[0][1]", "refcount table", version: 2);
    }

    [Fact]
    public async Task PartialZeroingOfADataEntryPointingAtTheRefcountBlockIsRefused()
    {
        var image = await WrittenAsync();
        await Qcow2Components.PutU64Async(image.Storage, image.L2 + 8, Copied | (ulong)image.RefBlock);
        await AssertRefusedAsync(image, async img => await img.WriteZeroesAsync(65536 + 512, 512), "L2[0][1]", "refcount block");
    }

    [Fact]
    public async Task RefcountBlockOnTheL1TableIsRefused()
    {
        var image = await WrittenAsync();
        await Qcow2Components.PutU64Async(image.Storage, image.RefTable, (ulong)image.L1);
        await AssertRefusedAsync(image, async img => await img.WriteAsync(65536, new byte[512]), "refcount_table[0]", "active L1 table");
    }

    [Fact]
    public async Task L2TableOnTheRefcountTableIsRefused()
    {
        var image = await WrittenAsync();
        await Qcow2Components.PutU64Async(image.Storage, image.L1 + 8, Copied | (ulong)image.RefTable);
        await AssertRefusedAsync(image, async img => await img.WriteAsync(600L << 20, new byte[512]), "L1[1]", "refcount table");
    }

    [Fact]
    public async Task L1TableOnTheRefcountTableIsRefusedWhenItWouldChange()
    {
        var image = await WrittenAsync();
        await Qcow2Components.PutU64Async(image.Storage, 40, (ulong)image.RefTable); // l1_table_offset = refcount_table_offset
        // (L1[0] then reads as the refcount table's first entry, naming the refcount block as L2 table 0: unreadable.)
        await AssertRefusedAsync(image, async img => await img.WriteAsync(600L << 20, new byte[512]), "l1_table_offset", "refcount table", readable: false);
    }

    [Fact]
    public async Task L1EntryPastTheEndOfTheFileFailsTheAllocationThatReachesIt()
    {
        // L1[1] names a table two clusters past the end: once the file grows there, that cluster would be both a new
        // data cluster and, through L1[1], an L2 table.
        var image = await WrittenAsync();
        long end = image.Storage.Length;
        await Qcow2Components.PutU64Async(image.Storage, image.L1 + 8, Copied | (ulong)(end + 2 * 65536));
        await AssertRefusedAsync(image, async img =>
        {
            for (int i = 2; i < 10; i++) await img.WriteAsync(i * 65536L, new byte[65536]);
        }, "L1[1]", "active L2 table");
    }

    [Fact]
    public async Task ValidImagesNeverTripTheChecks()
    {
        // Every kind of table grows and moves here: 512-byte clusters make many L2 tables and refcount blocks, and
        // 12 MiB of data outgrows the first refcount table cluster.
        var s = new MemoryStorage("valid.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 12L << 20, ClusterSize = 512 });
        var rnd = new Random(3);
        var data = new byte[1 << 20];
        rnd.NextBytes(data);
        await using (var img = await Qcow2Image.OpenAsync(s))
        {
            for (long at = 0; at < 12L << 20; at += 1 << 20) await img.WriteAsync(at, data);
            await img.FlushAsync();
            for (int i = 0; i < 200; i++)
            {
                long at = rnd.NextInt64(12L << 20) & ~511L;
                int n = (int)Math.Min(rnd.Next(1, 20000), (12L << 20) - at);
                switch (i % 3)
                {
                    case 0: await img.WriteAsync(at, data.AsMemory(0, n)); break;
                    case 1: await img.WriteZeroesAsync(at, n); break;
                    default: await img.DiscardAsync(at, n); break;
                }
            }
        }
        await using var again = await Qcow2Image.OpenAsync(s);
        Assert.True(again.Header.RefcountTableClusters > 1, "the refcount table should have moved");
        Assert.Equal(Qcow2IncompatibleFeatures.None, again.Header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt);
        await again.WriteAsync(0, data);
    }
}
