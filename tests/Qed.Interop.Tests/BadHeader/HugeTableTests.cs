using System.Buffers.Binary;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.BadHeader;

/// <summary>
/// A geometry whose tables are huge (64 MiB clusters, 16-cluster tables: 1 GiB per table) in a sparse file that takes
/// 4 KiB on disk. Following it would take gigabytes; qemu-img refuses it (with a size) and so must every qed command,
/// with one line, exit 1 and bounded memory, and the file left as it was.
/// </summary>
public class HugeTableTests
{
    private const uint ClusterSize = 64u << 20, TableSize = 16;

    /// <summary>Writes the 64-byte header and makes the file long enough (sparse) for the L1 table to fit.</summary>
    private static void MakeImage(string path, ulong imageSize)
    {
        var header = new byte[4096];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0), 0x00444551);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), ClusterSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), TableSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(40), ClusterSize); // L1 right after the header cluster
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(48), imageSize);
        using var f = new FileStream(path, FileMode.CreateNew);
        f.Write(header);
        f.SetLength((long)ClusterSize * (1 + TableSize));
    }

    [Theory]
    [InlineData(1UL << 30, "image_size")] // qemu-img: "QED image size is invalid"
    [InlineData(0UL, "table_size")]       // qemu-img opens this one (taking 1 GiB); qed refuses the geometry
    public void EveryCommandRefusesItInBoundedMemory(ulong imageSize, string field)
    {
        using var dir = new TempDir();
        MakeImage(dir["huge.qed"], imageSize);
        if (imageSize != 0)
        {
            var qemu = dir.QemuImg("info", "huge.qed");
            Assert.True(qemu.ExitCode == 1 && qemu.StdErr.Contains("QED image size is invalid"), qemu.ToString());
        }
        string before = dir.Hash("huge.qed");
        foreach (var args in new[]
        {
            new[] { "info", "huge.qed" }, ["map", "huge.qed"], ["map", "--output=json", "huge.qed"], ["check", "huge.qed"],
            ["check", "-r", "all", "huge.qed"], ["io", "-c", "read 0 512", "huge.qed"], ["convert", "-O", "raw", "huge.qed", "out.raw"],
        })
        {
            // 256 MiB of managed heap: loading one such table takes 1 GiB (2 GiB as bytes and entries).
            var r = Tool.Run("/usr/bin/env", dir.Path, ["DOTNET_GCHeapHardLimit=0x10000000", Tool.QedPath, .. args]);
            string what = string.Join(' ', args);
            Assert.True(r.ExitCode == 1, $"{what}: {r}");
            Assert.True(r.StdErr.TrimEnd('\n').Split('\n').Length == 1, $"{what}: not one line: {r}");
            Assert.DoesNotContain("   at ", r.StdErr);
            // qemu's bare words; the field ({field}) and its rule are in --debug's inner exception.
            Assert.True(r.StdErr.Contains(imageSize != 0 ? "QED image size is invalid" : "QED table size is invalid", StringComparison.Ordinal), $"{field}: {r}");
        }
        Assert.Equal(before, dir.Hash("huge.qed"));
    }
}
