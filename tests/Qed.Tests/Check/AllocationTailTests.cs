using Qed.Check;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Check;

/// <summary>
/// Found by the crash test: a write ending inside a new cluster past the file's end left the file ending mid-cluster
/// (the zero tail was skipped), so a reopen took the last cluster for a partial one and its entry for a corruption.
/// </summary>
public class AllocationTailTests
{
    [Theory]
    [InlineData(512, 8192)]
    [InlineData(0, 4096 + 100)]
    [InlineData(1000, 1)]
    public async Task AWriteEndingInsideANewClusterLeavesTheWholeClusterInTheFile(long offset, int length)
    {
        var file = new MemoryStorage();
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = 1L << 20, ClusterSize = 4096, TableSize = 2 });
        var data = new byte[length];
        Array.Fill(data, (byte)0x5a);
        await using (var image = await QedImage.OpenAsync(file))
            await image.WriteAsync(offset, data);

        Assert.Equal(0, file.Length % 4096);
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
        await using var reopened = await QedImage.OpenAsync(file);
        var back = new byte[length];
        await reopened.ReadAsync(offset, back);
        Assert.Equal(data, back);
    }
}
