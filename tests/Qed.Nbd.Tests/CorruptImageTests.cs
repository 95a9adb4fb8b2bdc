using System.Buffers.Binary;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>A QED or qcow2 image found corrupt while served: QEMU's client sees EIO ("Input/output error"), never EPERM (which means read-only).</summary>
public sealed class CorruptImageTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A QED image QEMU made, with data at 0 and 1 MiB, whose first L2 entry then points past the end of the file.</summary>
    private async Task<string> MakeCorruptQedAsync()
    {
        string path = _dir["corrupt.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", path, "64M");
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 64k", path);
        await using var f = File.Open(path, FileMode.Open, FileAccess.ReadWrite);
        var b = new byte[8];
        ulong ReadU64(long at) { f.Position = at; f.ReadExactly(b); return BinaryPrimitives.ReadUInt64LittleEndian(b); }
        ulong l1 = ReadU64(40);     // header: l1_table_offset
        ulong l2 = ReadU64((long)l1); // L1[0]: the table covering the data written above
        Assert.NotEqual(0UL, l2);
        BinaryPrimitives.WriteUInt64LittleEndian(b, 1UL << 30); // cluster aligned, far past the end of the file
        f.Position = (long)l2;
        f.Write(b);
        return path;
    }

    [Fact]
    public async Task ReadsAndLaterWritesFailWithEio()
    {
        string qed = await MakeCorruptQedAsync();
        await using var server = await TestServer.StartAsync(qed, format: ImageFormat.Qed);
        // One qemu-io, one connection: the read finds the corrupt entry, after which the image refuses writes.
        var r = await Tool.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 64k", "-c", "write -P 0x33 8M 4k", "-c", "read -P 0x22 1M 64k", server.Uri()]);
        string output = r.Stdout + r.Stderr;
        Assert.Contains("read failed: Input/output error", output);
        Assert.Contains("write failed: Input/output error", output);
        Assert.DoesNotContain("Operation not permitted", output);
        Assert.Contains("read 65536/65536 bytes at offset 1048576", output); // the sound entry still reads
    }

    /// <summary>A qcow2 image QEMU made, with data at 0 and 1 MiB, whose first L2 entry then points past the end of the file.</summary>
    private async Task<string> MakeCorruptQcow2Async()
    {
        string path = _dir["corrupt.qcow2"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qcow2", path, "64M");
        await Tool.CheckAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 64k", path);
        await using var f = File.Open(path, FileMode.Open, FileAccess.ReadWrite);
        var b = new byte[8];
        ulong ReadU64(long at) { f.Position = at; f.ReadExactly(b); return BinaryPrimitives.ReadUInt64BigEndian(b); }
        ulong l1 = ReadU64(40);                                  // header: l1_table_offset
        ulong l2 = ReadU64((long)l1) & 0x00ff_ffff_ffff_fe00UL;  // L1[0]: the table covering the data written above
        Assert.NotEqual(0UL, l2);
        BinaryPrimitives.WriteUInt64BigEndian(b, 1UL << 30 | 1UL << 63); // copied, cluster aligned, far past the end of the file
        f.Position = (long)l2;
        f.Write(b);
        return path;
    }

    [Fact]
    public async Task Qcow2ReadsAndWritesOfACorruptEntryFailWithEio()
    {
        string qcow2 = await MakeCorruptQcow2Async();
        await using var server = await TestServer.StartAsync(qcow2, format: ImageFormat.Qcow2);
        var r = await Tool.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 64k", "-c", "write -P 0x33 0 4k", "-c", "read -P 0x22 1M 64k", server.Uri()]);
        string output = r.Stdout + r.Stderr;
        Assert.Contains("read failed: Input/output error", output);
        Assert.Contains("write failed: Input/output error", output);
        Assert.DoesNotContain("Operation not permitted", output);
        Assert.Contains("read 65536/65536 bytes at offset 1048576", output); // the sound entry still reads
    }
}
