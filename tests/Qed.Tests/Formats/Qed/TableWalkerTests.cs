using Qed.Formats.Qed;
using Qed.Storage;
using OffsetProblem = Qed.Formats.Qed.EntryValidator.OffsetProblem;

namespace Qed.Tests.Formats.Qed;

public class TableWalkerTests
{
    // 4 KiB clusters, 2-cluster tables, a 2-cluster header, L1 in clusters 2-3, one L2 table in clusters 4-5; the file
    // is 10 whole clusters and 100 bytes, so the walker's file end is 40960.
    private const int Cluster = 4096;
    private const long L1Offset = 2 * Cluster;
    private const long Table0 = 4 * Cluster;

    private static readonly QedGeometry Geometry =
        new(EngineFixture.NewHeader() with { HeaderSize = 2, L1TableOffset = L1Offset });

    private static (RecordingStorage File, TableWalker Walker) Setup(ulong[] l1, ulong[]? table0 = null)
    {
        var memory = new MemoryStorage("walk.qed");
        var bytes = new byte[10 * Cluster + 100];
        TableCodec.Encode(l1, 0, l1.Length).CopyTo(bytes, L1Offset);
        if (table0 != null) TableCodec.Encode(table0, 0, table0.Length).CopyTo(bytes, Table0);
        memory.WriteAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        var file = new RecordingStorage(memory);
        return (file, new TableWalker(file, Geometry));
    }

    [Fact]
    public void TheFileEndIsTheEndOfTheLastWholeCluster()
    {
        var (_, walker) = Setup(new ulong[1024]);
        Assert.Equal(10 * Cluster, walker.FileEnd);
        Assert.Equal(10, walker.FileClusters);
    }

    [Fact]
    public async Task TablesListsEveryNamedTableInL1OrderWithTheVerdictOfTheTableOffsetRule()
    {
        var l1 = new ulong[1024];
        l1[0] = (ulong)Table0;
        l1[2] = (ulong)Table0 + 1;   // not aligned
        l1[3] = Cluster;              // inside the 2-cluster header
        l1[4] = 9 * Cluster;          // starts in the last whole cluster, its second cluster is the partial one
        l1[5] = 10 * Cluster;         // the partial cluster: wholly past the end
        l1[6] = ulong.MaxValue & ~(ulong)(Cluster - 1);
        l1[1023] = (ulong)L1Offset;   // the L1 table itself: a valid offset; overlaps are the caller's to judge
        var (_, walker) = Setup(l1);
        var read = await walker.ReadL1Async(CancellationToken.None);
        Assert.Equal(l1, read);
        Assert.Equal(
        [
            new(0, (ulong)Table0, OffsetProblem.None),
            new(2, (ulong)Table0 + 1, OffsetProblem.NotAligned),
            new(3, Cluster, OffsetProblem.InHeader),
            new(4, 9 * Cluster, OffsetProblem.CrossesEnd),
            new(5, 10 * Cluster, OffsetProblem.PastEnd),
            new(6, l1[6], OffsetProblem.PastEnd),
            new TableWalker.TableRef(1023, (ulong)L1Offset, OffsetProblem.None),
        ], walker.Tables(read).ToArray());
    }

    [Fact]
    public void TablesReadsEachEntryWhenItIsReached()
    {
        var l1 = new ulong[1024];
        l1[0] = l1[1] = (ulong)Table0;
        var (_, walker) = Setup(l1);
        var seen = new List<int>();
        foreach (var table in walker.Tables(l1))
        {
            seen.Add(table.L1Index);
            l1[1] = 0; // a repair zeroing a later entry: the walk no longer lists it
        }
        Assert.Equal([0], seen);
    }

    [Fact]
    public async Task AnL2TableIsDecodedIntoOneReusedBufferAndWrittenBackWhole()
    {
        var l1 = new ulong[1024];
        l1[0] = (ulong)Table0;
        var table0 = new ulong[1024];
        table0[0] = 6 * Cluster;
        table0[1023] = EntryValidator.ZeroClusterEntry;
        var (file, walker) = Setup(l1, table0);

        var entries = await walker.ReadL2Async((ulong)Table0, CancellationToken.None);
        Assert.Equal(table0, entries);
        entries[5] = 7 * Cluster;
        file.ClearLog();
        await walker.WriteL2Async((ulong)Table0, entries, CancellationToken.None);
        Assert.Equal([$"W {Table0} {2 * Cluster}"], file.Log);

        var again = await walker.ReadL2Async((ulong)Table0, CancellationToken.None);
        Assert.Same(entries, again); // one table in memory however many the image has
        Assert.Equal(7UL * Cluster, again[5]);
        Assert.Equal(6UL * Cluster, again[0]);
    }

    [Fact]
    public async Task AnL1EntryIsWrittenAloneAndTheWholeTableAtOnce()
    {
        var l1 = new ulong[1024];
        var (file, walker) = Setup(l1);
        l1[70] = 6 * Cluster;
        await walker.WriteL1EntryAsync(l1, 70, CancellationToken.None);
        Assert.Equal([$"W {L1Offset + 8 * 70} 8"], file.Log);
        Assert.Equal(6UL * Cluster, (await walker.ReadL1Async(CancellationToken.None))[70]);

        file.ClearLog();
        l1[71] = 8 * Cluster;
        await walker.WriteL1Async(l1, CancellationToken.None);
        Assert.Equal([$"W {L1Offset} {2 * Cluster}"], file.Log);
        Assert.Equal(l1, await walker.ReadL1Async(CancellationToken.None));
    }
}
