using System.Text.Json;
using Qed.Check;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Interop.Tests.Support;

/// <summary>Runs <c>qemu-img check</c> and our own checker on an image and asserts both find it clean.</summary>
public static class QemuCheck
{
    public static void AssertClean(TempDir dir, string name)
    {
        var result = dir.QemuImg("check", "--output=json", name);
        using var json = JsonDocument.Parse(result.StdOut);
        long Get(string key) => json.RootElement.TryGetProperty(key, out var v) ? v.GetInt64() : 0;
        Assert.True(Get("corruptions") == 0 && Get("check-errors") == 0, result.ToString());

        // QEMU 7.2 counts clusters by dividing by (cluster_size - 1) (its bug 2a), so a consistent image shows
        // floor(file clusters / (cluster_size - 1)) leaks; exactly that many is clean. Our checker must say 0.
        // cluster_size is the little-endian uint32 at header offset 4 (QED specification).
        long clusterSize = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(dir.Bytes(name).AsSpan(4, 4));
        long fileClusters = new FileInfo(dir[name]).Length / clusterSize;
        long spurious = fileClusters / (clusterSize - 1);
        Assert.True(Get("leaks") == spurious, $"expected {spurious} (spurious) leaks\n{result}");
        Assert.Equal(spurious == 0 ? 0 : 3, result.ExitCode);

        var ours = ImageFile.CheckAsync(dir[name]).GetAwaiter().GetResult();
        Assert.True(ours.Leaks == 0 && ours.Corruptions == 0 && ours.CheckErrors == 0,
            $"our checker: {ours.Leaks} leaks, {ours.Corruptions} corruptions, {ours.CheckErrors} errors");
    }
}
