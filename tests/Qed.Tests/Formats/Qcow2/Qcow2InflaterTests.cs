using System.IO.Compression;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>Compressed clusters: inflated to exactly one cluster, the last one kept, bad deflate data or a short
/// result reported as a format error naming the host offset.</summary>
public sealed class Qcow2InflaterTests
{
    private const int Bits = 12, Cluster = 1 << Bits; // 4 KiB: x = 62 - 4 = 58, four bits of sector count

    private static ulong Entry(long host, int bytes) => Qcow2Entries.CompressedFlag | (ulong)((host + bytes - 1) / 512 - host / 512) << 58 | (ulong)host;

    private static byte[] Deflate(byte[] content)
    {
        var ms = new MemoryStream();
        using (var d = new DeflateStream(ms, CompressionLevel.Optimal, leaveOpen: true)) d.Write(content);
        return ms.ToArray();
    }

    [Fact]
    public async Task AClusterInflatesAndTheLastOneIsKept()
    {
        var content = new byte[Cluster];
        for (int i = 0; i < content.Length; i++) content[i] = (byte)(i * 7 / 100);
        var packed = Deflate(content);
        var s = new MemoryStorage();
        long host = 0x3000 + 100; // compressed data starts anywhere in a sector
        await s.WriteAsync(host, packed);
        var inflater = new Qcow2Inflater(s, Bits);
        var entry = Entry(host, packed.Length);
        var first = await inflater.InflateAsync(entry, host, default);
        Assert.Equal(content, first);
        Assert.Same(first, await inflater.InflateAsync(entry, host, default));
    }

    [Fact]
    public async Task BadDeflateDataIsAFormatError()
    {
        var s = new MemoryStorage();
        await s.WriteAsync(0x3000, Enumerable.Repeat((byte)0xff, 512).ToArray());
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await new Qcow2Inflater(s, Bits).InflateAsync(Entry(0x3000, 512), 0x3000, default));
        Assert.Equal("compressed_cluster", e.Field);
        Assert.Equal(0x3000, e.FileOffset);
    }

    [Fact]
    public async Task AShortClusterIsAFormatError()
    {
        var s = new MemoryStorage();
        var packed = Deflate(new byte[100]);
        await s.WriteAsync(0x3000, packed);
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await new Qcow2Inflater(s, Bits).InflateAsync(Entry(0x3000, packed.Length), 0x3000, default));
        Assert.Contains("decompresses to 100 bytes, not the cluster size 4096", e.Message);
    }
}
