using Qed.Check;
using Qed.Formats.Qcow2;
using Qed.Storage;
using Qed.Tests.Formats.Qcow2;
using Qed.Tests.Hostile;

namespace Qed.Tests.Qcow2;

/// <summary>
/// The qcow2 checker on images this library writes, in memory: counts of a clean image, a leak and its repair, a
/// refcount block lost and rebuilt with the data intact, memory bounded by the metadata for a huge virtual size,
/// and a read-only file refused for repair.
/// </summary>
[Collection(nameof(AllocationMeasurements))]
public sealed class Qcow2CheckTests
{
    /// <summary>A 1 GiB image with guest clusters 0, 1 and 512 MiB written (two L2 tables).</summary>
    private static async Task<MemoryStorage> WrittenAsync()
    {
        var s = new MemoryStorage("check.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 1L << 30 });
        await using var image = await Qcow2Image.OpenAsync(s);
        await image.WriteAsync(0, SampleImages.Filled(131072, 0x21));
        await image.WriteAsync(512L << 20, SampleImages.Filled(65536, 0x22));
        return s;
    }

    private static async Task<byte[]> GuestAsync(MemoryStorage s)
    {
        await using var image = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var all = new byte[3 * 65536];
        await image.ReadAsync(0, all.AsMemory(0, 131072));
        await image.ReadAsync(512L << 20, all.AsMemory(131072));
        return all;
    }

    [Fact]
    public async Task CleanImageCountsAsQemuImg()
    {
        var s = await WrittenAsync();
        var r = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        Assert.Equal((0L, 0L, 0L), (r.Corruptions, r.Leaks, r.CheckErrors));
        Assert.Equal(16384, r.TotalClusters);
        Assert.Equal(3, r.AllocatedClusters);
        Assert.Equal(ImageFormat.Qcow2, r.Format);
        Assert.Equal((s.Length + 65535) / 65536 * 65536, r.ImageEndOffset);
    }

    [Fact]
    public async Task LeakIsFoundAndRepairedInPlace()
    {
        var s = await WrittenAsync();
        long refBlock = (long)await Qcow2Components.U64Async(s, (long)await Qcow2Components.U64Async(s, 48));
        long lastCluster = s.Length / 65536 - 1;
        await s.WriteAsync(refBlock + 2 * lastCluster, new byte[] { 0, 2 });
        var found = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        // The data cluster keeps its copied flag while its refcount says 2: qemu-img counts that as a corruption too.
        Assert.Equal((1L, 1L), (found.Corruptions, found.Leaks));
        Assert.Contains($"Leaked cluster {lastCluster} refcount=2 reference=1", found.Messages);

        var repaired = await Qcow2Checker.CheckAsync(s, CheckRepair.Leaks);
        Assert.Equal((1L, 0L, 0L), (repaired.LeaksFixed, repaired.Leaks, repaired.Corruptions));
        var again = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        Assert.Equal((0L, 0L), (again.Corruptions, again.Leaks));
    }

    [Fact]
    public async Task LostRefcountBlockIsRebuiltAndDataKept()
    {
        var s = await WrittenAsync();
        var before = await GuestAsync(s);
        await Qcow2Components.PutU64Async(s, (long)await Qcow2Components.U64Async(s, 48), 0);
        var found = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        Assert.True(found.Corruptions > 0);

        var leaksOnly = await Qcow2Checker.CheckAsync(s, CheckRepair.Leaks);
        Assert.Equal("Input/output error", leaksOnly.Failure);
        Assert.Contains("ERROR need to rebuild refcount structures", leaksOnly.Messages);

        var repaired = await Qcow2Checker.CheckAsync(s, CheckRepair.All);
        Assert.Equal((0L, 0L, 0L), (repaired.Corruptions, repaired.Leaks, repaired.CheckErrors));
        Assert.True(repaired.CorruptionsFixed > 0);
        Assert.Equal(before, await GuestAsync(s));
        // The library's own writer accepts the rebuilt structure and keeps it consistent.
        await using (var image = await Qcow2Image.OpenAsync(s)) await image.WriteAsync(256L << 20, SampleImages.Filled(65536, 0x33));
        var after = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        Assert.Equal((0L, 0L), (after.Corruptions, after.Leaks));
    }

    [Fact]
    public async Task MemoryFollowsTheMetadataNotTheVirtualSize()
    {
        var s = new MemoryStorage("huge.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 64L << 40 }); // 64 TiB: a 1 MiB L1 table
        await using (var image = await Qcow2Image.OpenAsync(s)) await image.WriteAsync(63L << 40, SampleImages.Filled(65536, 0x44));
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        var r = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        Assert.Equal((0L, 0L), (r.Corruptions, r.Leaks));
        Assert.Equal((64L << 40) / 65536, r.TotalClusters);
        Assert.True(allocated < 64L << 20, $"the check allocated {allocated} bytes");
    }

    /// <summary>Every entry of a 4 MiB L1 table names the same L2 table: walked once, counted 512 Ki times (a walk per
    /// entry would visit 4 Gi entries).</summary>
    [Fact]
    public async Task TablesNamedOverAndOverAreWalkedOnce()
    {
        var s = new MemoryStorage("hostile.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 256L << 40 });
        await using (var image = await Qcow2Image.OpenAsync(s)) await image.WriteAsync(0, SampleImages.Filled(65536, 0x55));
        long l1 = (long)await Qcow2Components.U64Async(s, 40);
        ulong first = await Qcow2Components.U64Async(s, l1);
        int entries = (int)(await Qcow2Components.U64Async(s, 36) >> 32);
        var table = new byte[entries * 8L];
        for (int i = 0; i < entries; i++) System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), first);
        await s.WriteAsync(l1, table);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var r = await Qcow2Checker.CheckAsync(s, CheckRepair.None);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"the check took {watch.Elapsed}");
        Assert.Equal(entries, r.AllocatedClusters); // one data cluster, mapped by every table
        Assert.True(r.Corruptions >= entries - 65535, $"{r.Corruptions} corruptions"); // 16-bit refcounts overflow
        Assert.True(r.Messages.Count <= 1001, $"{r.Messages.Count} messages"); // the rest are counted, not listed
        Assert.EndsWith("more problems not listed)", r.Messages[^1]);
    }

    [Fact]
    public async Task ReadOnlyFileIsNotRepaired()
    {
        var s = await WrittenAsync();
        var ro = new MemoryStorage(s.ToArray(), "ro.qcow2", access: FileAccess.Read);
        await Assert.ThrowsAsync<InvalidOperationException>(() => Qcow2Checker.CheckAsync(ro, CheckRepair.All));
    }
}
