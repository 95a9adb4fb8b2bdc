using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Write;

/// <summary>
/// A partial write into a new cluster at the end of the file must leave the whole cluster inside the file: a trailing
/// partial cluster counts as past the end of file, so its entry would be invalid (found by qemu-img check).
/// </summary>
public class PartialClusterAtEndTests
{
    [Theory]
    [InlineData(0, 4096)]
    [InlineData(3 << 20, 4096)]
    [InlineData(70000, 100)]
    public async Task FileEndsOnClusterBoundaryAndDataReadsBack(long offset, int length)
    {
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = 4 << 20 });
        var data = new byte[length];
        new Random(length).NextBytes(data);
        await using (var image = await QedImage.OpenAsync(storage))
        {
            await image.WriteAsync(offset, data);
            await image.FlushAsync();
            Assert.Equal(0, storage.Length % image.ClusterSize);
        }
        var snapshot = new MemoryStorage(storage.ToArray());
        await using var reopened = await QedImage.OpenAsync(snapshot, new ImageOpenOptions { ReadOnly = true });
        var back = new byte[length];
        await reopened.ReadAsync(offset, back);
        Assert.Equal(data, back);
        var check = await Qed.Check.QedChecker.CheckAsync(snapshot, Qed.Check.CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
    }
}
