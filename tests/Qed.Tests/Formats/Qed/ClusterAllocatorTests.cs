using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Tests.Formats.Qed;

public class ClusterAllocatorTests
{
    private const long Step = ClusterAllocator.GrowStep;

    private static (RecordingStorage File, ClusterAllocator Allocator, Lock MetaLock) Setup(long length)
    {
        var memory = new MemoryStorage();
        memory.SetLengthAsync(length).AsTask().GetAwaiter().GetResult();
        var file = new RecordingStorage(memory);
        var metaLock = new Lock();
        return (file, new ClusterAllocator(file, 4096, length, metaLock), metaLock);
    }

    [Fact]
    public void ClustersComeFromTheEndPastAPartialTrailingCluster()
    {
        var (file, allocator, _) = Setup(3 * 4096 + 100);
        Assert.Equal(3 * 4096, allocator.FileEnd); // the partial cluster is reused: its bytes are stale
        Assert.Equal(3 * 4096 + 100, allocator.StaleEnd);
        Assert.Equal(3 * 4096, allocator.Reserve(4096));
        Assert.Equal(4 * 4096, allocator.Reserve(8192));
        Assert.Equal(6 * 4096, allocator.FileEnd);
        Assert.True(file.Length >= allocator.FileEnd, "the file covers every reserved cluster");
        Assert.Equal(4 * 4096 + Step, file.Length); // grown once, a step past the first reservation that needed it
    }

    [Fact]
    public void NearTheEndAReservationAsksForGrowthOutsideTheLock()
    {
        var (file, allocator, metaLock) = Setup(4096);
        allocator.Reserve(4096); // grows to 8K + step
        long grown = file.Length;
        Assert.Equal(2 * 4096 + Step, grown);
        file.ClearLog();
        // Reserve until within half a step of the end: no growth under the lock, only a request for it.
        long reserved = 2 * 4096;
        while (grown - reserved >= Step / 2)
        {
            lock (metaLock) allocator.ReserveLocked(65536);
            reserved += 65536;
        }
        Assert.Empty(file.Log);
        Assert.Equal(grown, file.Length);
        allocator.GrowAheadIfAsked();
        Assert.Equal(grown + Step, file.Length);
        Assert.Equal([$"G {grown + Step}"], file.Log);
        allocator.GrowAheadIfAsked(); // asked once, grown once
        Assert.Single(file.Log);
    }

    [Fact]
    public async Task ConcurrentReservationsNeverOverlap()
    {
        var (file, allocator, _) = Setup(4096);
        var offsets = new System.Collections.Concurrent.ConcurrentBag<long>();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < 200; i++)
            {
                offsets.Add(allocator.Reserve(4096));
                allocator.GrowAheadIfAsked();
            }
        })));
        var sorted = offsets.Order().ToArray();
        Assert.Equal(1600, sorted.Distinct().Count());
        Assert.Equal(4096, sorted[0]);
        Assert.Equal(4096 + 1599 * 4096L, sorted[^1]);
        Assert.True(file.Length >= allocator.FileEnd);
    }

    [Fact]
    public async Task CloseTrimsTheSlackButKeepsReservedClustersAndWhatWasThere()
    {
        var (file, allocator, _) = Setup(10 * 4096 + 7);
        allocator.Reserve(4096);
        Assert.True(file.Length > 11 * 4096);
        await allocator.TrimAsync();
        Assert.Equal(11 * 4096, file.Length);

        var (file2, allocator2, _) = Setup(10 * 4096 + 7);
        await allocator2.TrimAsync(); // nothing reserved: the file is left as it was
        Assert.Equal(10 * 4096 + 7, file2.Length);
        Assert.Empty(file2.Log);
    }

    [Fact]
    public async Task TruncationMovesTheCursorBackAndClearsNothingStale()
    {
        var (file, allocator, _) = Setup(20 * 4096);
        allocator.Reserve(4096);
        await allocator.TruncateToAsync(8 * 4096);
        Assert.Equal(8 * 4096, file.Length);
        Assert.Equal(8 * 4096, allocator.FileEnd);
        Assert.Equal(8 * 4096, allocator.StaleEnd); // past the cut the file reads as zeroes: no fill needed there
        Assert.Contains("F", file.Log);
        Assert.Equal(8 * 4096, allocator.Reserve(4096));
    }
}
