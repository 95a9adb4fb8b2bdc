using Qed.Check;
using Qed.Storage;
using static Qed.Tests.Hostile.SampleImages;
using Qed.Formats.Qed;

namespace Qed.Tests.Hostile;

/// <summary>
/// A corpus of broken images made here from valid ones: every header field out of range, table entries that are
/// unaligned, past the end of the file, inside the L1 table or another L2 table, duplicated, overlapping tables,
/// truncated files, absurd sizes. Each must fail with <see cref="ImageFormatException"/> naming the field or entry,
/// refuse writes after a corruption is met, and (where repairable) be repaired by the check without losing data.
/// </summary>
public class HostileCorpusTests
{
    public static TheoryData<string, long, ulong, int, string> HeaderCases => new()
    {
        // name, header offset, value, width (4 or 8), expected field
        { "bad magic", 0, 0x00444552, 4, "magic" },
        { "cluster 0", 4, 0, 4, "cluster_size" },
        { "cluster 2048", 4, 2048, 4, "cluster_size" },
        { "cluster not a power of 2", 4, 12288, 4, "cluster_size" },
        { "cluster 128 MiB", 4, 128u << 20, 4, "cluster_size" },
        { "table 0", 8, 0, 4, "table_size" },
        { "table 3", 8, 3, 4, "table_size" },
        { "table 32", 8, 32, 4, "table_size" },
        { "header 0", 12, 0, 4, "header_size" },
        { "header huge", 12, uint.MaxValue, 4, "l1_table_offset" }, // the L1 table is inside it, as QEMU reports
        { "header covers L1", 12, 2, 4, "l1_table_offset" },
        { "unknown feature", 16, 0x100, 8, "features" },
        { "L1 unaligned", 40, 0x1200, 8, "l1_table_offset" },
        { "L1 in header", 40, 0, 8, "l1_table_offset" },
        { "L1 past EOF", 40, 0x100000, 8, "l1_table_offset" },
        { "L1 huge", 40, ulong.MaxValue - 4095, 8, "l1_table_offset" },
        { "size not sector multiple", 48, 1000, 8, "image_size" },
        { "size past max", 48, 1UL << 62, 8, "image_size" },
        { "size max", 48, ulong.MaxValue, 8, "image_size" },
    };

    [Theory]
    [MemberData(nameof(HeaderCases))]
    public async Task HeaderFieldsOutOfRangeAreRefusedNamingTheField(string name, long offset, ulong value, int width, string field)
    {
        var bytes = await TwoTablesAsync();
        if (width == 4) Poke32(bytes, offset, (uint)value); else Poke(bytes, offset, value);
        var error = await Assert.ThrowsAsync<ImageFormatException>(() => QedImage.OpenAsync(new MemoryStorage(bytes)));
        Assert.True(error.Field == field, $"{name}: field {error.Field}, message {error.Message}");
        var checkError = await Assert.ThrowsAsync<ImageFormatException>(() => QedChecker.CheckAsync(new MemoryStorage(bytes), CheckRepair.None));
        Assert.Equal(field, checkError.Field);
    }

    [Theory]
    [InlineData(0x40, 100000u)]    // name far past the header cluster
    [InlineData(0xff0, 64u)]       // name crossing the end of the header cluster
    [InlineData(0xffffffff, 8u)]   // offset + size overflows 32 bits
    public async Task BackingNameOutsideTheHeaderIsRefused(uint nameOffset, uint nameSize)
    {
        var bytes = await TwoTablesAsync();
        Poke(bytes, 16, 1); // BACKING_FILE
        Poke32(bytes, 56, nameOffset);
        Poke32(bytes, 60, nameSize);
        var error = await Assert.ThrowsAsync<ImageFormatException>(() => QedImage.OpenAsync(new MemoryStorage(bytes)));
        Assert.Equal("backing_filename_offset", error.Field);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(32)]
    [InlineData(63)]
    [InlineData(4096 + 100)]   // inside the L1 table
    public async Task TruncatedBeforeTheL1TableEndsIsRefused(int length)
    {
        var bytes = (await TwoTablesAsync())[..length];
        var error = await Assert.ThrowsAsync<ImageFormatException>(() => QedImage.OpenAsync(new MemoryStorage(bytes)));
        Assert.True(error.Field is "magic" or "l1_table_offset", error.Message);
    }

    /// <summary>A table entry that cannot be followed; the guest offset reading through it; whether -r all repairs it.</summary>
    public static TheoryData<string, string, long, bool> EntryCases => new()
    {
        { "L2 entry past EOF", "L2[0][1]", 4096, true },
        { "L2 entry unaligned", "L2[0][1]", 4096, true },
        { "L2 entry huge", "L2[0][1]", 4096, true },
        { "L2 entry into the L1 table", "L2[0][1]", 4096, true },
        { "L2 entry into another L2 table", "L2[0][1]", 4096, true },
        { "L2 entry into its own table", "L2[0][1]", 4096, true },
        { "L1 entry past EOF", "L1[1]", 4L << 20, true },
        { "L1 entry unaligned", "L1[1]", 4L << 20, true },
        { "L1 entry is 1", "L1[1]", 4L << 20, true },
        { "L2 table overlapping L1", "L1[1]", 4L << 20, true },
        { "two L1 entries share a table", "L1[1]", 4L << 20, true },
        { "L2 tables overlapping by a cluster", "L1[1]", 4L << 20, true },
        { "truncated inside an L2 table", "L1[1]", 4L << 20, true },
        { "truncated inside a data cluster", "L2[1][0]", 4L << 20, true },
    };

    private static byte[] Corrupt(byte[] b, string name)
    {
        long l1 = L1(b);
        ulong table0 = U64(b, L1Entry(b, 0)), table1 = U64(b, L1Entry(b, 1));
        ulong data0 = U64(b, L2Entry(b, 0, 0));
        switch (name)
        {
            case "L2 entry past EOF": Poke(b, L2Entry(b, 0, 1), 0x1000000); break;
            case "L2 entry unaligned": Poke(b, L2Entry(b, 0, 1), data0 + 0x200); break;
            case "L2 entry huge": Poke(b, L2Entry(b, 0, 1), 0xffff_ffff_ffff_f000); break; // offset + cluster wraps to 0
            case "L2 entry into the L1 table": Poke(b, L2Entry(b, 0, 1), (ulong)l1 + 4096); break;
            case "L2 entry into another L2 table": Poke(b, L2Entry(b, 0, 1), table1); break;
            case "L2 entry into its own table": Poke(b, L2Entry(b, 0, 1), table0 + 4096); break;
            case "L1 entry past EOF": Poke(b, L1Entry(b, 1), 0x7777000); break;
            case "L1 entry unaligned": Poke(b, L1Entry(b, 1), table1 + 8); break;
            case "L1 entry is 1": Poke(b, L1Entry(b, 1), 1); break;
            case "L2 table overlapping L1": Poke(b, L1Entry(b, 1), (ulong)l1); break;
            case "two L1 entries share a table": Poke(b, L1Entry(b, 1), table0); break;
            case "L2 tables overlapping by a cluster": Poke(b, L1Entry(b, 1), table0 + 4096); break;
            case "truncated inside an L2 table": return b[..(int)(table1 + 4096)];
            case "truncated inside a data cluster": return b[..(int)(U64(b, L2Entry(b, 1, 0)) + 2048)];
            default: throw new ArgumentException(name);
        }
        return b;
    }

    [Theory]
    [MemberData(nameof(EntryCases))]
    public async Task CorruptEntriesFailTheRequestRefuseWritesAndAreRepaired(string name, string field, long guestOffset, bool repairable)
    {
        var bytes = Corrupt(await TwoTablesAsync(), name);
        var file = new MemoryStorage(bytes);
        var before = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.True(before.Corruptions > 0, $"{name}: the check finds no corruption");
        Assert.Equal(bytes, file.ToArray()); // a check without -r changes nothing

        await using (var image = await QedImage.OpenAsync(file))
        {
            var error = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.ReadAsync(guestOffset, new byte[4096]));
            Assert.True(error.Field == field, $"{name}: {error.Field}: {error.Message}");
            Assert.Contains(field.Split('[')[0], error.Message);
            // After a corruption the image refuses every write, even to a healthy cluster, until it is checked.
            var refused = await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteAsync(0, new byte[512]));
            Assert.Contains("refused", refused.Message);
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteZeroesAsync(0, 4096));
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.DiscardAsync(0, 4096));
            // Reads elsewhere still work.
            var healthy = new byte[4096];
            await image.ReadAsync(0, healthy);
            Assert.Equal(Filled(4096, 0xa1), healthy);
        }
        Assert.Equal(bytes.Length, file.Length);

        var repair = await QedChecker.CheckAsync(file, CheckRepair.All);
        var after = await QedChecker.CheckAsync(file, CheckRepair.None);
        if (!repairable)
        {
            Assert.True(after.Corruptions > 0, $"{name}: reported as repaired");
            return;
        }
        Assert.True(after.Corruptions == 0, $"{name}: {string.Join("; ", after.Messages)}");
        Assert.True(repair.CorruptionsFixed > 0);
        // What read correctly before the repair still does, and the repaired range reads without error.
        await using var repaired = await QedImage.OpenAsync(file);
        var data = new byte[4096];
        await repaired.ReadAsync(0, data);
        Assert.Equal(Filled(4096, 0xa1), data);
        await repaired.ReadAsync(64 << 10, data);
        Assert.Equal(Filled(4096, 0xb2), data);
        await repaired.ReadAsync(guestOffset, data);
        await repaired.WriteAsync(guestOffset, Filled(4096, 0x77));
        await repaired.ReadAsync(0, data);
        Assert.Equal(Filled(4096, 0xa1), data);
    }

    /// <summary>
    /// An image with a two-cluster header area (not something create makes, but valid): L1 at 0x2000, one L2 table
    /// at 0x4000, guest 0 at 0x6000. Entries pointing into the header's second cluster are corrupt.
    /// </summary>
    private static async Task<MemoryStorage> TwoClusterHeaderAsync()
    {
        var bytes = new byte[0x7000];
        new Qed.Formats.Qed.QedHeader
        {
            Magic = Qed.Formats.Qed.QedHeader.MagicValue, ClusterSize = 4096, TableSize = 2, HeaderSize = 2,
            L1TableOffset = 0x2000, ImageSize = 8UL << 20,
        }.WriteTo(bytes);
        Poke(bytes, 0x2000, 0x4000);
        Poke(bytes, 0x4000, 0x6000);
        Array.Fill(bytes, (byte)0xa1, 0x6000, 4096);
        var file = new MemoryStorage(bytes);
        await using (var image = await QedImage.OpenAsync(file))
        {
            var data = new byte[4096];
            await image.ReadAsync(0, data);
            Assert.Equal(Filled(4096, 0xa1), data); // the hand-made image is valid
        }
        Assert.Equal(0, (await QedChecker.CheckAsync(file, CheckRepair.None)).Corruptions);
        return file;
    }

    [Theory]
    [InlineData(0x4008L, "L2[0][1]", 4096L)]     // L2 entry 1 -> header cluster 1
    [InlineData(0x2008L, "L1[1]", 4L << 20)]     // L1 entry 1 -> header cluster 1
    public async Task EntriesIntoTheHeaderAreCorruptAndRepaired(long entryAt, string field, long guestOffset)
    {
        var file = await TwoClusterHeaderAsync();
        await file.WriteAsync(entryAt, BitConverter.GetBytes(0x1000UL));
        Assert.Equal(1, (await QedChecker.CheckAsync(file, CheckRepair.None)).Corruptions);
        await using (var image = await QedImage.OpenAsync(file))
        {
            var error = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.ReadAsync(guestOffset, new byte[512]));
            Assert.Equal(field, error.Field);
            await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteAsync(0, new byte[512]));
        }
        var repair = await QedChecker.CheckAsync(file, CheckRepair.All);
        Assert.Equal(1, repair.CorruptionsFixed);
        Assert.Equal(0, repair.Corruptions);
    }

    [Fact]
    public async Task ADuplicatedDataClusterGetsItsOwnCopyAndNothingIsLost()
    {
        var bytes = await TwoTablesAsync();
        Poke(bytes, L2Entry(bytes, 0, 1), U64(bytes, L2Entry(bytes, 0, 0))); // guest 4K now shares guest 0's cluster
        var file = new MemoryStorage(bytes);
        var found = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(1, found.Corruptions);
        var repair = await QedChecker.CheckAsync(file, CheckRepair.All);
        Assert.Equal(1, repair.CorruptionsFixed);
        Assert.Equal(0, repair.Corruptions);
        await using var image = await QedImage.OpenAsync(file);
        var data = new byte[4096];
        await image.ReadAsync(4096, data);
        Assert.Equal(Filled(4096, 0xa1), data); // what the second reference read before
        await image.WriteAsync(4096, Filled(4096, 0x99));
        await image.ReadAsync(0, data);
        Assert.Equal(Filled(4096, 0xa1), data); // and the references are independent now
    }

    [Fact]
    public async Task LeaksAtTheEndAreReclaimedAndOthersReported()
    {
        var bytes = await TwoTablesAsync();
        int clean = bytes.Length;
        var file = new MemoryStorage(bytes);
        await file.WriteAsync(clean + 3 * 4096, Filled(4096, 0xee)); // four junk clusters after the last used one
        var found = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(4, found.Leaks);
        var repaired = await QedChecker.CheckAsync(file, CheckRepair.Leaks);
        Assert.Equal(4, repaired.LeaksFixed);
        Assert.Equal(0, repaired.Leaks);
        Assert.Equal(clean, file.Length);
    }

    [Fact]
    public async Task AnAbsurdVirtualSizeOverATinyFileWorks()
    {
        var file = new MemoryStorage();
        long size = 64L << 40;
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = size });
        await using (var image = await QedImage.OpenAsync(file))
        {
            var data = new byte[65536];
            await image.ReadAsync(size - data.Length, data);
            Assert.All(data, b => Assert.Equal(0, b));
            await image.WriteAsync(size - 4096, Filled(4096, 0x42));
            int extents = 0;
            await foreach (var _ in AllocationMap.EnumerateAsync(image, 0, size)) extents++;
            Assert.Equal(2, extents);
        }
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(size / 65536, check.TotalClusters);
    }

    [Fact]
    public async Task CheckingASparse64TiBImageDoesNotAllocatePerVirtualCluster()
    {
        var file = new MemoryStorage();
        long size = 64L << 40;
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = size });
        await using (var image = await QedImage.OpenAsync(file))
        {
            foreach (long at in new[] { 0L, 1L << 40, 32L << 40, size - 65536 })
                await image.WriteAsync(at, Filled(65536, 0x33));
        }
        await QedChecker.CheckAsync(file, CheckRepair.None); // warm up
        // MemoryStorage completes synchronously, so the whole check runs on this thread.
        long before = GC.GetAllocatedBytesForCurrentThread();
        var result = await QedChecker.CheckAsync(file, CheckRepair.None);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, result.Corruptions);
        Assert.Equal(4, result.AllocatedClusters);
        // 2^30 virtual clusters: a bit each would be 128 MiB. The check needs the L1 table and one L2 buffer (256 KiB each).
        Assert.True(allocated < 4L << 20, $"the check allocated {allocated} bytes");
    }
}
