using Qed.Formats.Qcow2;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>
/// The cluster allocator (512-byte clusters, 16-bit refcounts: a block counts 256 clusters, a one-cluster table 64
/// blocks): clusters come from the end with refcount 1, blocks and a bigger table are made on the way, and frees wait
/// for the write-back and refuse to go below zero.
/// </summary>
public sealed class Qcow2ClusterAllocatorTests
{
    [Fact]
    public async Task ClustersComeFromTheEndWithRefcountOne()
    {
        var c = await Qcow2Components.NewAsync();
        long end = c.Storage.Length;
        Assert.Equal(end, c.Allocator.ValidEnd);
        long at = await c.Allocator.AllocateAsync(3, default);
        Assert.Equal(end, at);
        Assert.Equal(end + 3 * 512, c.Allocator.ValidEnd);
        for (long cl = at / 512; cl < at / 512 + 3; cl++) Assert.Equal(1UL, await c.RefcountAsync(cl));
        Assert.Equal(0UL, await c.RefcountAsync(at / 512 + 3));
        Assert.Equal(end + 3 * 512, await c.Allocator.AllocateAsync(1, default)); // never given out twice
        Assert.Equal(end, c.Storage.Length); // all in memory: nothing written yet
    }

    [Fact]
    public async Task ABlockIsMadeWhereNoneCountsTheCursorAndCountsItself()
    {
        var c = await Qcow2Components.NewAsync();
        long end = c.Storage.Length;
        int toBoundary = (int)(256 - end / 512);
        await c.Allocator.AllocateAsync(toBoundary, default); // up to the last cluster block 0 covers
        Assert.Equal(-1, c.Refcounts.BlockOffset(1, c.Allocator.ValidEnd));
        long at = await c.Allocator.AllocateAsync(1, default);
        // Block 1 took cluster 256 (it covers itself), the allocation the one after.
        Assert.Equal(256L * 512, c.Refcounts.BlockOffset(1, c.Allocator.ValidEnd));
        Assert.Equal(257L * 512, at);
        Assert.Equal(1UL, await c.RefcountAsync(256));
        Assert.Equal(1UL, await c.RefcountAsync(257));
        Assert.True(c.Refcounts.TableDirty);
    }

    [Fact]
    public async Task TheTableMovesWhenItCannotNameABlock()
    {
        var c = await Qcow2Components.NewAsync(size: 64L << 20);
        long oldTable = c.Refcounts.TableOffset;
        int oldLength = c.Refcounts.TableLength; // 64 entries: 64 * 256 clusters = 8 MiB
        for (int i = 0; i < 20; i++) await c.Allocator.AllocateAsync(1000, default); // ~10 MB
        Assert.True(c.Refcounts.TableLength >= 2 * oldLength);
        Assert.NotEqual(oldTable, c.Refcounts.TableOffset);
        Assert.True(c.Allocator.HasPendingFrees); // the old table, freed after the next write-back
        Assert.Equal(1UL, await c.RefcountAsync(oldTable / 512));
        await c.Allocator.ApplyPendingFreesAsync(default);
        Assert.Equal(0UL, await c.RefcountAsync(oldTable / 512));
        Assert.Equal(1UL, await c.RefcountAsync(c.Refcounts.TableOffset / 512));
    }

    [Fact]
    public async Task FreesWaitUntilAppliedAndNeverGoBelowZero()
    {
        var c = await Qcow2Components.NewAsync();
        long at = await c.Allocator.AllocateAsync(2, default);
        c.Allocator.QueueFreeOf((ulong)at | Qcow2Entries.CopiedFlag);
        c.Allocator.QueueFreeOf(Qcow2Entries.ZeroFlag); // holds nothing
        Assert.Equal(1UL, await c.RefcountAsync(at / 512)); // queued, not applied
        await c.Allocator.ApplyPendingFreesAsync(default);
        Assert.Equal(0UL, await c.RefcountAsync(at / 512));
        Assert.Equal(1UL, await c.RefcountAsync(at / 512 + 1));
        Assert.False(c.Allocator.HasPendingFrees);

        c.Allocator.QueueFree(at, 512);
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Allocator.ApplyPendingFreesAsync(default));
        Assert.Equal("refcount", e.Field);
        Assert.Equal(at, e.FileOffset);
    }

    [Fact]
    public async Task ACompressedEntryFreesEveryClusterItsSectorsTouch()
    {
        var c = await Qcow2Components.NewAsync();
        long at = await c.Allocator.AllocateAsync(3, default);
        // 512-byte clusters: x = 62 - 1 = 61, one bit of sector count; two sectors from at + 256 are 768 bytes, on clusters 0 and 1.
        ulong entry = Qcow2Entries.CompressedFlag | 1UL << 61 | (ulong)(at + 256);
        c.Allocator.QueueFreeOf(entry);
        await c.Allocator.ApplyPendingFreesAsync(default);
        Assert.Equal(0UL, await c.RefcountAsync(at / 512));
        Assert.Equal(0UL, await c.RefcountAsync(at / 512 + 1));
        Assert.Equal(1UL, await c.RefcountAsync(at / 512 + 2));
    }

    [Fact]
    public async Task ANewClusterWhereAnEntryPlacesMetadataFailsAndMarksTheImageCorrupt()
    {
        var c = await Qcow2Components.NewAsync();
        long end = c.Storage.Length;
        c.Guard.Add(end / 512, Qcow2Metadata.ActiveL2); // as if an L1 entry named a table past the end of the file
        long at = await c.Allocator.AllocateAsync(1, default);
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await c.Guard.CheckNewClustersAsync("for a test", at, 512));
        Assert.Contains("overlaps the active L2 table", e.Message);
        Assert.Same(e, c.Failure.Failure);
    }
}
