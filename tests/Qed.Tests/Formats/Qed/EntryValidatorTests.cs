using Qed.Formats.Qed;
using OffsetProblem = Qed.Formats.Qed.EntryValidator.OffsetProblem;

namespace Qed.Tests.Formats.Qed;

public class EntryValidatorTests
{
    // Fixture layout: header [0, 4K), L1 [4K, 12K), table 0 [12K, 20K), file end 20K + extra.
    private static (EngineFixture F, L2Table Table) Setup()
    {
        var f = new EngineFixture(tables: 1, extraFileBytes: 4 * 4096);
        return (f, new L2Table(0, (ulong)EngineFixture.FirstFree, new ulong[1024], linked: true));
    }

    [Fact]
    public void ZeroAndOneAreUnallocatedAndZeroClusters()
    {
        var (f, table) = Setup();
        Assert.Equal(ExtentKind.Unallocated, f.Validator.Classify(table, 0, 0));
        Assert.Equal(ExtentKind.Zero, f.Validator.Classify(table, 0, EntryValidator.ZeroClusterEntry));
        Assert.Equal(ExtentKind.Data, f.Validator.Classify(table, 0, 20480));
        Assert.Equal(ExtentKind.Data, f.Validator.Classify(table, 0, 32768)); // the last whole cluster
        Assert.Null(f.Latch.Failure);
    }

    [Theory]
    [InlineData(20481UL, "not cluster aligned")]
    [InlineData(2UL, "not cluster aligned")]
    [InlineData(4096UL, "inside the L1 table")]
    [InlineData(8192UL, "inside the L1 table")]
    [InlineData(12288UL, "inside an L2 table")]
    [InlineData(16384UL, "inside an L2 table")]
    [InlineData(36864UL, "past the end of the file")]
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, "past the end of the file")]
    public void ADataEntryThatCannotBeFollowedIsACorruptionNamingTheEntry(ulong entry, string problem)
    {
        var (f, table) = Setup();
        var e = Assert.Throws<ImageFormatException>(() => f.Validator.Classify(table, 7, entry));
        Assert.Contains(problem, e.Message);
        Assert.Equal("L2[0][7]", e.Field);
        Assert.Equal(EngineFixture.FirstFree + 8 * 7, e.FileOffset);
        Assert.Contains("needs repairing with ImageFile.CheckAsync and CheckRepair.All", e.Message);
        Assert.Same(e, f.Latch.Failure); // writes stop until a check
        Assert.Throws<ImageNeedsCheckException>(f.Latch.ThrowIfFailed);
    }

    [Fact]
    public void AHeaderOfTwoClustersRefusesEntriesInIt()
    {
        var f = new EngineFixture();
        var g = new QedGeometry(EngineFixture.NewHeader() with { HeaderSize = 4, L1TableOffset = 16384 });
        var validator = new EntryValidator(g, new ClusterAllocator(f.File, 4096, 1 << 20, f.MetaLock), f.Latch);
        var table = new L2Table(0, 65536, new ulong[1024], linked: true);
        Assert.Contains("inside the header", Assert.Throws<ImageFormatException>(() => validator.Classify(table, 0, 8192)).Message);
    }

    [Fact]
    public void NewAndMovedTablesAreIndexedAndForgotten()
    {
        var (f, table) = Setup();
        f.Validator.AddTable(1, 24576);
        Assert.True(f.Validator.IsTableCluster(6));
        Assert.True(f.Validator.IsTableCluster(7));
        Assert.Contains("inside an L2 table", Assert.Throws<ImageFormatException>(() => f.Validator.Classify(table, 0, 28672)).Message);
        f.Validator.RemoveTable(24576);
        Assert.False(f.Validator.IsTableCluster(6));
        Assert.Equal(ExtentKind.Data, f.Validator.Classify(table, 0, 28672));
    }

    [Fact]
    public void AnL1EntryMustNameAValidTableClearOfL1AndOfEarlierTables()
    {
        // L1[0] and L1[1] name the same table; L1[2] names the L1 table; L1[3] is unaligned; L1[4] runs past the end.
        var l1 = new ulong[1024];
        l1[0] = l1[1] = (ulong)EngineFixture.FirstFree;
        l1[2] = (ulong)EngineFixture.L1Offset;
        l1[3] = (ulong)EngineFixture.FirstFree + 1;
        l1[4] = (ulong)EngineFixture.FirstFree + 4096;
        var f = new EngineFixture(tables: 1, l1Entries: l1);
        f.Validator.CheckTable(0, l1[0]);
        var overlap = Assert.Throws<ImageFormatException>(() => f.Validator.CheckTable(1, l1[1]));
        Assert.Contains("overlaps another L2 table", overlap.Message);
        Assert.Equal("L1[1]", overlap.Field);
        Assert.Equal(EngineFixture.L1Offset + 8, overlap.FileOffset);
        foreach (int i in new[] { 2, 3, 4 })
            Assert.Contains("invalid table offset", Assert.Throws<ImageFormatException>(() => f.Validator.CheckTable(i, l1[i])).Message);
        Assert.Same(overlap, f.Latch.Failure); // the first failure stays the one reported
    }

    // The rules the open and the check share. Geometry: 4 KiB clusters, 2-cluster tables, a 4-cluster header; the file's
    // last whole cluster ends at 40960 (cluster 10).
    private static readonly QedGeometry RuleGeometry = new(EngineFixture.NewHeader() with { HeaderSize = 4, L1TableOffset = 16384 });

    [Theory]
    [InlineData(16384UL, "None")]        // the L1 table's own offset: overlaps are the caller's to judge
    [InlineData(32768UL, "None")]        // clusters 8-9, the last two whole clusters
    [InlineData(32769UL, "NotAligned")]
    [InlineData(2UL, "NotAligned")]
    [InlineData(12288UL, "InHeader")]
    [InlineData(36864UL, "CrossesEnd")] // cluster 9 is in the file, cluster 10 is not
    [InlineData(40960UL, "PastEnd")]
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, "PastEnd")]
    public void TheTableOffsetRuleNamesTheFirstRuleBroken(ulong offset, string problem)
    {
        var expected = Enum.Parse<OffsetProblem>(problem);
        Assert.Equal(expected, EntryValidator.TableOffsetProblem(RuleGeometry, offset, 40960));
        Assert.Equal(expected == OffsetProblem.None, RuleGeometry.IsValidTableOffset(offset, 10));
    }

    [Theory]
    [InlineData(16384UL, "None")]        // inside L1: the caller's to judge (open refuses, check counts)
    [InlineData(36864UL, "None")]        // the last whole cluster
    [InlineData(36865UL, "NotAligned")]
    [InlineData(12288UL, "InHeader")]
    [InlineData(4096UL, "InHeader")]
    [InlineData(40960UL, "PastEnd")]
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, "PastEnd")]
    public void TheDataOffsetRuleNamesTheFirstRuleBroken(ulong entry, string problem) =>
        Assert.Equal(Enum.Parse<OffsetProblem>(problem), EntryValidator.DataOffsetProblem(RuleGeometry, entry, 40960));
}
