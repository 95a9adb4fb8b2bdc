using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>QEMU 7.2's NBD client (qemu-img, qemu-io) against the server, on images QEMU made.</summary>
public sealed class QemuClientTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The reference's QED test image: data at 0 and 64 MiB, a zeroed 4 MiB at 128 MiB.</summary>
    private async Task<string> MakeQedAsync()
    {
        string path = _dir["t.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", path, "256M");
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 0x55 0 1M", "-c", "write -P 0x66 64M 512k", "-c", "write -z 128M 4M", path);
        return path;
    }

    [Fact]
    public async Task InfoMapCompareAndConvertRead()
    {
        string qed = await MakeQedAsync();
        string expectedMap = await Tool.CheckAsync("qemu-img", "map", "--output=json", "-f", "qed", qed);
        await using (var server = await TestServer.StartAsync(qed, readOnly: true))
        {
            string uri = server.Uri();
            string info = await Tool.CheckAsync("qemu-img", "info", uri);
            Assert.Contains("virtual size: 256 MiB (268435456 bytes)", info);

            string map = await Tool.CheckAsync("qemu-img", "map", "--output=json", "-f", "raw", uri);
            Assert.Equal(MapModel.FromQemuImgJson(expectedMap, MapModel.BaseAllocation), MapModel.FromQemuImgJson(map, MapModel.BaseAllocation));

            await Tool.CheckAsync("qemu-img", "compare", "-f", "raw", "-F", "qed", uri, qed);
            await Tool.CheckAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, _dir["out.raw"]);
        }
        await Tool.CheckAsync("qemu-img", "compare", "-f", "raw", "-F", "qed", _dir["out.raw"], qed);
    }

    [Fact]
    public async Task ConvertWritesThroughNbdAndImageStaysClean()
    {
        string qed = _dir["w.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, "64M");
        // A source with data, zero runs and odd-sized pieces so convert sends WRITE and WRITE_ZEROES.
        var src = new byte[64 << 20];
        var rnd = new Random(3);
        for (int i = 0; i < 40; i++)
        {
            int off = rnd.Next(0, src.Length - 600_000), len = rnd.Next(1, 600_000);
            rnd.NextBytes(src.AsSpan(off, len));
        }
        await File.WriteAllBytesAsync(_dir["src.raw"], src);
        await using (var server = await TestServer.StartAsync(qed))
        {
            await Tool.CheckAsync("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", _dir["src.raw"], server.Uri());
            await Tool.CheckAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", server.Uri(), _dir["src.raw"]);
        }
        string check = await Tool.CheckAsync("qemu-img", "check", qed);
        Assert.Contains("No errors were found", check);
        await Tool.CheckAsync("qemu-img", "compare", "-f", "qed", "-F", "raw", qed, _dir["src.raw"]);
    }

    [Fact]
    public async Task QemuIoWritesZeroesDiscardsAndVerifies()
    {
        string qed = await MakeQedAsync();
        await using (var server = await TestServer.StartAsync(qed))
        {
            var r = await Tool.RunAsync("qemu-io", ["-f", "raw",
                "-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k",
                "-c", "write -z 128k 1M", "-c", "read -P 0 128k 1M",
                "-c", "write -P 0xcd 2M 1M", "-c", "write -z -u 2M 1M", "-c", "read -P 0 2M 1M",
                "-c", "discard 4M 1M", "-c", "flush",
                "-c", "read -P 0x66 64M 512k", "-c", "write -P 0x11 1000 3000", "-c", "read -P 0x11 1000 3000",
                "-c", "read -P 0x55 64k 64k",
                server.Uri()]);
            Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("fail", StringComparison.OrdinalIgnoreCase), r.ToString());
            Assert.Equal(12, r.Stdout.Split('\n').Count(l => l.StartsWith("wrote") || l.StartsWith("read") || l.StartsWith("discard")));
        }
        Assert.Contains("No errors were found", await Tool.CheckAsync("qemu-img", "check", qed));
        // Every verified pattern is really in the file, read back by qemu-io itself.
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "read -P 0xab 0 1000", "-c", "read -P 0x11 1000 3000", "-c", "read -P 0 2M 1M", qed);
    }
}
