using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Defrag;

/// <summary>
/// <c>qed defrag</c> on images whose clusters qemu-io (or qed) wrote in random order: afterwards qemu-img check is
/// clean, qemu-img compare finds the content unchanged, qemu-img map shows the data at increasing, contiguous file
/// offsets in guest order, and the file holds nothing but the header, L1, the L2 tables and the data.
/// </summary>
public class DefragInteropTests
{
    /// <summary>qemu-io commands writing clusters in a shuffled order, with some zero writes and partial clusters.</summary>
    private static string[] ShuffledWrites(int seed, long size, int clusterSize)
    {
        var rnd = new Random(seed);
        var clusters = Enumerable.Range(0, (int)(size / clusterSize)).Where(_ => rnd.Next(4) != 0).ToArray();
        rnd.Shuffle(clusters);
        return clusters.Select(c => rnd.Next(12) switch
        {
            0 => $"write -z {(long)c * clusterSize} {clusterSize}",
            1 => $"write -P {c % 250 + 1} {(long)c * clusterSize + 512} 1024",
            _ => $"write -P {c % 250 + 1} {(long)c * clusterSize} {clusterSize}",
        }).ToArray();
    }

    /// <summary>Asserts this layer's data is in guest order and contiguous from the end of the tables; returns the data bytes.</summary>
    private static long AssertGuestOrdered(TempDir dir, string name, long firstDataOffset)
    {
        var map = Tool.Ok(dir.QemuImg("map", "--output=json", name));
        using var json = JsonDocument.Parse(map.StdOut);
        long next = firstDataOffset, data = 0;
        foreach (var e in json.RootElement.EnumerateArray())
        {
            if (e.GetProperty("depth").GetInt32() != 0 || !e.GetProperty("data").GetBoolean()) continue;
            long offset = e.GetProperty("offset").GetInt64(), length = e.GetProperty("length").GetInt64();
            Assert.True(offset == next, $"guest {e.GetProperty("start").GetInt64()} at file offset {offset}, expected {next}\n{map.StdOut}");
            next += length;
            data += length;
        }
        return data;
    }

    [Theory]
    [InlineData("cluster_size=4k,table_size=2", 4096, 8L << 20, 2, 1)]   // two L2 tables
    [InlineData("cluster_size=64k", 65536, 32L << 20, 1, 2)]
    public void ShuffledQemuImagesDefragmentIntoGuestOrder(string options, int clusterSize, long size, int tables, int seed)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-o", options, "img.qed", size.ToString()));
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(ShuffledWrites(seed, size, clusterSize)), "img.qed"]));
        Tool.Ok(dir.QemuImg("convert", "-f", "qed", "-O", "raw", "img.qed", "ref.raw"));
        long tableBytes = clusterSize * (options.Contains("table_size=2") ? 2L : 4L);

        var result = Tool.Ok(dir.Qed("defrag", "img.qed"));
        Assert.Contains("defragmented", result.StdOut);

        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
        long firstData = clusterSize + tableBytes * (1 + tables);
        long data = AssertGuestOrdered(dir, "img.qed", firstData);
        Assert.Equal(firstData + data, new FileInfo(dir["img.qed"]).Length);
    }

    [Fact]
    public void AnOverlayKeepsItsBackingFileAndContent()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "4M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 4M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed", "6M"));
        Tool.Ok(dir.QemuIo(["-f", "qed", .. Scenario.C(ShuffledWrites(3, 6L << 20, 65536)), "img.qed"]));
        Tool.Ok(dir.QemuImg("convert", "-f", "qed", "-O", "raw", "img.qed", "ref.raw"));

        Tool.Ok(dir.Qed("defrag", "-f", "qed", "-p", "img.qed"));

        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
        long firstData = 65536 + 4 * 65536 * 2L;
        long data = AssertGuestOrdered(dir, "img.qed", firstData);
        Assert.Equal(firstData + data, new FileInfo(dir["img.qed"]).Length);
        Assert.Contains("base.raw", Tool.Ok(dir.QemuImg("info", "img.qed")).StdOut);
    }

    [Fact]
    public void LeakedSpaceIsDropped()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.Qed("create", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "img.qed", "4M"));
        Tool.Ok(dir.Qed(["io", .. Scenario.C(ShuffledWrites(4, 4L << 20, 4096)), "img.qed"]));
        // A quarter of the image leaked: its L2 entries zeroed (discard keeps mappings, so it leaks nothing now).
        var bytes = File.ReadAllBytes(dir["img.qed"]);
        long table = (long)BitConverter.ToUInt64(bytes, 4096);
        Array.Clear(bytes, (int)table + 8 * 256, 8 * 256);
        File.WriteAllBytes(dir["img.qed"], bytes);
        var before = dir.QemuImg("check", "--output=json", "img.qed");
        Assert.Equal(3, before.ExitCode); // leaks only
        Tool.Ok(dir.QemuImg("convert", "-f", "qed", "-O", "raw", "img.qed", "ref.raw"));
        long sizeBefore = new FileInfo(dir["img.qed"]).Length;

        Tool.Ok(dir.Qed("defrag", "img.qed"));

        QemuCheck.AssertClean(dir, "img.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img.qed", "ref.raw"));
        long firstData = 4096 + 8192 * 2L;
        long data = AssertGuestOrdered(dir, "img.qed", firstData);
        Assert.Equal(firstData + data, new FileInfo(dir["img.qed"]).Length);
        Assert.True(new FileInfo(dir["img.qed"]).Length < sizeBefore);
    }

    [Fact]
    public void BadFilesGetOneLineAndStayUnchanged()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["text.qed"], "not an image at all\n");
        string textHash = dir.Hash("text.qed");
        var text = dir.Qed("defrag", "-f", "qed", "text.qed");
        Assert.Equal(1, text.ExitCode);
        Assert.Single(text.StdErr.Trim().Split('\n'));
        Assert.StartsWith("qed: ", text.StdErr);
        Assert.Equal(textHash, dir.Hash("text.qed"));

        // An L2 entry pointing past the end of the file: refused before anything moves.
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "bad.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 1M 4k", "-c", "write -P 2 0 4k", "bad.qed"));
        byte[] bytes = dir.Bytes("bad.qed");
        long table = BitConverter.ToInt64(bytes, 4096);
        BitConverter.GetBytes(1L << 30).CopyTo(bytes, table + 8 * 3);
        File.WriteAllBytes(dir["bad.qed"], bytes);
        string hash = dir.Hash("bad.qed");
        var bad = dir.Qed("defrag", "bad.qed");
        Assert.Equal(1, bad.ExitCode);
        Assert.Single(bad.StdErr.Trim().Split('\n'));
        Assert.Contains("past the end of the file", bad.StdErr);
        Assert.Equal(hash, dir.Hash("bad.qed"));

        var raw = dir.Qed("defrag", "-f", "raw", "text.qed");
        Assert.Equal(1, raw.ExitCode);
        Assert.Single(raw.StdErr.Trim().Split('\n'));
    }
}
