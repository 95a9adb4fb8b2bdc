using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>
/// Metadata write-back: refcount blocks, sync, L2 tables, sync, L1 sectors, sync, then frees (each step only when it
/// has something), so that any prefix surviving a crash leaks at worst; and a table on other metadata stops it before
/// it writes anything.
/// </summary>
public sealed class Qcow2WriteBackTests
{
    /// <summary>Records each write (as the area it lands in) and each sync.</summary>
    private sealed class Recorder(MemoryStorage inner) : ForwardingStorage(inner)
    {
        public readonly List<string> Log = new();
        public Func<long, string> Area = _ => "?";
        public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            Log.Add(Area(offset));
            return base.WriteAsync(offset, data, ct);
        }
        public override ValueTask FlushAsync(CancellationToken ct = default)
        {
            Log.Add("sync");
            return base.FlushAsync(ct);
        }
    }

    /// <summary>Components over a recorder; the L2 table for L1 index 1 is made at the end of the file, as a write would.</summary>
    private static async Task<(Qcow2Components C, Recorder R, Qcow2L2Table Table)> WithNewTableAsync()
    {
        Recorder? recorder = null;
        var c = await Qcow2Components.NewAsync(wrap: m => recorder = new Recorder(m));
        long at = await c.Allocator.AllocateAsync(1, default);
        c.Guard.Add(at / 512, Qcow2Metadata.ActiveL2);
        var table = new Qcow2L2Table(1, at, new ulong[64]);
        c.Cache.AddNew(table);
        long data = await c.Allocator.AllocateAsync(1, default);
        table.Entries[0] = (ulong)data | Qcow2Entries.CopiedFlag;
        c.L1[1] = (ulong)at | Qcow2Entries.CopiedFlag;
        c.WriteBack.AddDirty(table);
        c.WriteBack.AddDirtyL1(1);
        long l1 = (long)c.Header.L1TableOffset, block = c.Refcounts.BlockOffset(0, c.Allocator.ValidEnd);
        recorder!.Area = o => o == at ? "L2" : o >= l1 && o < l1 + 512 ? "L1" : o == block ? "refblock" : $"0x{o:x}";
        return (c, recorder, table);
    }

    [Fact]
    public async Task TablesGoOutInDependencyOrderWithASyncBetweenSteps()
    {
        var (c, r, table) = await WithNewTableAsync();
        Assert.Equal(512, c.WriteBack.DirtyL2Bytes);
        await c.WriteBack.RunAsync();
        Assert.Equal(["refblock", "sync", "L2", "sync", "L1", "sync"], r.Log);
        Assert.False(c.Cache.IsDirty(table));
        Assert.Equal(0, c.WriteBack.DirtyL2Bytes);
        Assert.Equal(c.L1[1], await Qcow2Components.U64Async(c.Storage, (long)c.Header.L1TableOffset + 8));
        Assert.Equal(table.Entries[0], await Qcow2Components.U64Async(c.Storage, table.FileOffset));

        r.Log.Clear();
        await c.WriteBack.RunAsync(); // nothing dirty: only the sync that makes guest data durable
        Assert.Equal(["sync"], r.Log);
    }

    [Fact]
    public async Task FreesComeLastAfterTheEntriesThatDroppedThem()
    {
        var (c, r, table) = await WithNewTableAsync();
        long old = (long)(table.Entries[0] & Qcow2Entries.OffsetMask);
        await c.WriteBack.RunAsync();
        r.Log.Clear();
        long replacement = await c.Allocator.AllocateAsync(1, default);
        c.Allocator.QueueFreeOf(table.Entries[0]);
        table.Entries[0] = (ulong)replacement | Qcow2Entries.CopiedFlag;
        c.WriteBack.AddDirty(c.Cache.MarkDirty(table));
        await c.WriteBack.RunAsync();
        Assert.Equal(["refblock", "sync", "L2", "sync", "refblock", "sync"], r.Log);
        Assert.Equal(0UL, await c.RefcountAsync(old / 512));
        Assert.Equal(1UL, await c.RefcountAsync(replacement / 512));
    }

    [Fact]
    public async Task ATableOnOtherMetadataStopsTheWriteBackBeforeAnyWrite()
    {
        var (c, r, _) = await WithNewTableAsync();
        var bad = new Qcow2L2Table(2, (long)c.Header.RefcountTableOffset, new ulong[64]); // an L1 entry naming the refcount table
        c.WriteBack.AddDirty(bad);
        c.WriteBack.AddDirtyL1(2);
        var e = await Assert.ThrowsAsync<ImageFormatException>(c.WriteBack.RunAsync);
        Assert.Equal("L1[2]", e.Field);
        Assert.DoesNotContain(r.Log, x => x is "L2" or "L1" or "refblock");
    }
}
