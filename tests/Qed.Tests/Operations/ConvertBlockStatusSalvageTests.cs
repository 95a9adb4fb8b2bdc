using Qed.Formats.Raw;
using Qed.Formats;
using Qed.Operations;
using Qed.Storage;

namespace Qed.Tests.Operations;

/// <summary>
/// Convert over blkdebug rules (<see cref="FaultInjectingStorage"/>) that fail allocation queries and reads: with
/// salvage (<see cref="ConvertOptions.OnBlockStatusError"/>, <see cref="ConvertOptions.OnReadError"/>) each failing
/// sector is reported in offset order (twice for block status, as qemu-img's counting pass and copy both query), taken
/// as data, and zeroed only where its read fails; without salvage the copy fails in qemu-img's words.
/// </summary>
public class ConvertBlockStatusSalvageTests
{
    private const int Size = 8 << 20;

    private static InjectedError Rule(InjectedIoType type, long offset) => new("none", InjectedError.EIO, false, offset / 512) { IoType = type };

    private static byte[] Pattern()
    {
        var bytes = new byte[Size];
        for (int i = 0; i < Size; i++) bytes[i] = (byte)(i % 251 + 1);
        return bytes;
    }

    private static RawImage Source(byte[] data, params InjectedError[] rules) =>
        new(new FaultInjectingStorage(new MemoryStorage(data), rules), readOnly: true);

    [Fact]
    public async Task FailedAllocationQueriesAreNarrowedToSectorsReportedTwiceAndCopiedAsData()
    {
        byte[] data = Pattern();
        long bs0 = (2 << 20) + 8192, shared = (5 << 20) + 512, read0 = (4 << 20) - 65536;
        await using var source = Source(data, Rule(InjectedIoType.BlockStatus, bs0), Rule(InjectedIoType.BlockStatus, shared),
            Rule(InjectedIoType.Read, read0), Rule(InjectedIoType.Read, shared), Rule(InjectedIoType.Read, 6 << 20), Rule(InjectedIoType.Read, (6 << 20) + 512));
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        var log = new List<string>();
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions
        {
            OnBlockStatusError = (at, e) => log.Add($"status {at} {e.Message}"),
            OnReadError = (at, e) => log.Add($"read {at} {e.Message}"),
        });

        // The order qemu-img 7.2 prints for iotest 251's layout: the counting pass, then the copy in offset order.
        Assert.Equal([
            $"status {bs0} Input/output error", $"status {shared} Input/output error",
            $"status {bs0} Input/output error", $"read {read0} Input/output error",
            $"status {shared} Input/output error", $"read {shared} Input/output error",
            $"read {6 << 20} Input/output error", $"read {(6 << 20) + 512} Input/output error",
        ], log);
        byte[] copied = new byte[Size];
        await target.ReadAsync(0, copied);
        byte[] expected = (byte[])data.Clone();
        foreach (long at in new[] { read0, shared, 6 << 20, (6 << 20) + 512 }) Array.Clear(expected, (int)at, 512);
        Assert.Equal(expected, copied); // bs0 could be read: its data is there
    }

    [Fact]
    public async Task NeighbouringSectorsFailEachOnTheirOwn()
    {
        long at = 3 << 20;
        await using var source = Source(Pattern(), Rule(InjectedIoType.BlockStatus, at), Rule(InjectedIoType.BlockStatus, at + 512));
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        var reported = new List<long>();
        await ConvertOperation.CopyAsync(source, target, new ConvertOptions { OnBlockStatusError = (o, _) => reported.Add(o) });
        Assert.Equal([at, at + 512, at, at + 512], reported);
    }

    [Fact]
    public async Task WithoutSalvageAFailedQueryFailsTheCopyNamingTheQueryStart()
    {
        await using var source = Source(Pattern(), Rule(InjectedIoType.BlockStatus, (5 << 20) + 512));
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        var e = await Assert.ThrowsAsync<IOException>(() => ConvertOperation.CopyAsync(source, target));
        // The first query asks for the whole image, and a rule anywhere in a query's range fails it (qemu-img: offset 0).
        Assert.Equal("error while reading block status at offset 0: Input/output error", e.Message);
    }

    [Fact]
    public async Task WithoutSalvageAFailedReadNamesItsChunk()
    {
        await using var source = Source(Pattern(), Rule(InjectedIoType.Read, (5 << 20) + 512));
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        var e = await Assert.ThrowsAsync<IOException>(() => ConvertOperation.CopyAsync(source, target));
        Assert.Equal($"error while reading at byte {4 << 20}: Input/output error", e.Message); // qemu-img's 2 MiB requests
    }

    [Fact]
    public async Task ReadSalvageAloneLeavesBlockStatusErrorsFatal()
    {
        await using var source = Source(Pattern(), Rule(InjectedIoType.BlockStatus, 1 << 20));
        await using var target = new RawImage(new MemoryStorage(new byte[Size]), readOnly: false);
        await Assert.ThrowsAsync<IOException>(() => ConvertOperation.CopyAsync(source, target, new ConvertOptions { OnReadError = (_, _) => { } }));
    }
}
