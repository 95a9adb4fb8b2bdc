using Qed.Check;
using Qed.Operations;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>
/// Streaming down to a base (QEMU's block-stream base): what the layers above the base supply is copied in, the base
/// becomes the backing file, and the image reads the same throughout, while a writer keeps writing.
/// </summary>
public class StreamToBaseTests
{
    [Theory]
    [InlineData("m2.qed", 1, 4096u)]
    [InlineData("m1.qed", 2, 4096u)]
    [InlineData("base.raw", 3, 4096u)]
    [InlineData("base.raw", 4, 65536u)]
    [InlineData(null, 5, 4096u)]
    public async Task StreamToABaseWhileWritingKeepsEveryByte(string? baseName, int seed, uint clusterSize)
    {
        var chain = await StreamChain.BuildAsync(seed, clusterSize);
        var file = new MemoryStorage(chain.Files["top.qed"], "top.qed");
        var model = await chain.ReadAllAsync(file);
        long leaksBefore = (await QedChecker.CheckAsync(file, CheckRepair.None)).Leaks; // discards while building the layer leak
        var image = await chain.OpenTopAsync(file);

        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var r = new Random(seed + 100);
            int writes = 0;
            while (!stop.IsCancellationRequested || writes < 30)
            {
                long offset = r.NextInt64(StreamChain.Size - 50_000);
                var data = new byte[r.Next(1, 50_000)];
                r.NextBytes(data);
                await image.WriteAsync(offset, data);
                lock (model) data.CopyTo(model, offset);
                writes++;
            }
        });
        await StreamOperation.RunAsync(image, new StreamOptions { Base = baseName });
        stop.Cancel();
        await writer;

        Assert.Equal(baseName, image.BackingFilename);
        Assert.Equal(baseName, image.Backing?.Name);
        Assert.Equal(baseName == "base.raw" ? ImageFormat.Raw : null, image.BackingFormat);
        var back = new byte[StreamChain.Size];
        await image.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(model), $"differs at {back.AsSpan().CommonPrefixLength(model)}");
        await image.DisposeAsync();

        // Reopened by the header alone; the layers between the image and the base are no longer needed.
        if (baseName != null) foreach (var skipped in new[] { "m2.qed", "m1.qed", "base.raw" }.TakeWhile(n => n != baseName)) chain.Files.Remove(skipped);
        back = await chain.ReadAllAsync(file);
        Assert.True(back.AsSpan().SequenceEqual(model), $"after reopen, differs at {back.AsSpan().CommonPrefixLength(model)}");
        var check = await QedChecker.CheckAsync(file, CheckRepair.None);
        Assert.True(check.Corruptions == 0 && check.Leaks == leaksBefore && check.CheckErrors == 0, $"corruptions {check.Corruptions}, leaks {check.Leaks}, errors {check.CheckErrors}: {string.Join("; ", check.Messages)}");
        AssertNoStaleName(file.ToArray(), baseName);
    }

    [Fact]
    public async Task ABaseOutsideTheChainIsRefusedAndChangesNothing()
    {
        var chain = await StreamChain.BuildAsync(7);
        var file = new MemoryStorage(chain.Files["top.qed"], "top.qed");
        var before = file.ToArray();
        await using (var image = await chain.OpenTopAsync(file))
        {
            var e = await Assert.ThrowsAsync<ArgumentException>(() => StreamOperation.RunAsync(image, new StreamOptions { Base = "other.qed" }));
            Assert.Contains("'other.qed' is not in the backing chain of 'top.qed'", e.Message);
            e = await Assert.ThrowsAsync<ArgumentException>(() => StreamOperation.RunAsync(image, new StreamOptions { Base = "base.raw", BaseFormat = ImageFormat.Qcow2 }));
            Assert.Contains("raw", e.Message);
        }
        Assert.True(file.ToArray().AsSpan().SequenceEqual(before));
    }

    [Fact]
    public async Task ALongerOldNameLeavesNoStaleBytes()
    {
        // The backing name of the top image is long (past the first sector), so the switch takes the name-first path.
        var chain = await StreamChain.BuildAsync(8);
        string longName = new string('x', 600) + ".qed";
        chain.Files[longName] = chain.Files["m2.qed"];
        var file = new MemoryStorage("top.qed");
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = StreamChain.Size, ClusterSize = 4096, TableSize = 2, BackingFile = longName });
        var model = await chain.ReadAllAsync(file);
        await using (var image = await chain.OpenTopAsync(file))
            await StreamOperation.RunAsync(image, new StreamOptions { Base = "m1.qed" });
        var bytes = file.ToArray();
        AssertNoStaleName(bytes, "m1.qed");
        Assert.True((await chain.ReadAllAsync(file)).AsSpan().SequenceEqual(model));
    }

    /// <summary>The header area holds the header, the new name, recovery record sectors and zeroes, nothing else.</summary>
    internal static void AssertNoStaleName(byte[] file, string? name)
    {
        var header = QedHeader.Parse(file.AsSpan(0, QedHeader.Size));
        var area = file.AsSpan(QedHeader.Size, (int)(header.ClusterSize * header.HeaderSize) - QedHeader.Size).ToArray();
        if (RecoveryRecordFormat.For(header) is { } record)
        {
            // Sectors of the recovery record (docs/recovery-record.md) are no stale name: each starts with its magic.
            for (long at = record.AreaOffset; at < record.AreaOffset + record.AreaBytes; at += RecoveryRecordFormat.SectorSize)
            {
                var sector = area.AsSpan((int)(at - QedHeader.Size), RecoveryRecordFormat.SectorSize);
                if (sector.IndexOfAnyExcept((byte)0) < 0) continue;
                Assert.True(BitConverter.ToUInt32(sector) == RecoveryRecordFormat.Magic, $"stale bytes in the recovery record's sector at {at}");
                sector.Clear();
            }
        }
        if (name != null)
        {
            Assert.True(header.HasBackingFile);
            int at = (int)header.BackingFilenameOffset - QedHeader.Size;
            Assert.Equal(name, System.Text.Encoding.UTF8.GetString(area, at, (int)header.BackingFilenameSize));
            Array.Clear(area, at, (int)header.BackingFilenameSize);
        }
        else
        {
            Assert.False(header.HasBackingFile);
        }
        Assert.True(area.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"stale byte at header offset {QedHeader.Size + area.AsSpan().IndexOfAnyExcept((byte)0)}");
    }
}
