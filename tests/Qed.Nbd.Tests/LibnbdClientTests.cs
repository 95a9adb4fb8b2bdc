using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>libnbd's tools (nbdinfo, nbdcopy) and fio's nbd engine against the server.</summary>
public sealed class LibnbdClientTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task NbdinfoMapsMatchQemuImgMapOfABackingChain()
    {
        string b = _dir["base.qed"], o = _dir["ov.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", b, "64M");
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 1 0 2M", "-c", "write -P 2 8M 1M", "-c", "write -z 20M 1M", b);
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", "-b", b, "-F", "qed", o);
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 3 512k 1M", "-c", "write -z 8M 256k", "-c", "write -P 4 30M 64k", o);
        string expected = await Tool.CheckAsync("qemu-img", "map", "--output=json", "-f", "qed", o);

        await using var server = await TestServer.StartAsync(o, readOnly: true);
        string uri = server.Uri();
        string list = await Tool.CheckAsync("nbdinfo", "--list", uri);
        Assert.Contains("base:allocation", list);
        Assert.Contains("qemu:allocation-depth", list);
        Assert.Contains("test export disk", list);

        Assert.Equal(MapModel.FromQemuImgJson(expected, MapModel.BaseAllocation), MapModel.FromNbdinfo(await Tool.CheckAsync("nbdinfo", "--map", uri)));
        Assert.Equal(MapModel.FromQemuImgJson(expected, MapModel.AllocationDepth),
            MapModel.FromNbdinfo(await Tool.CheckAsync("nbdinfo", "--map=qemu:allocation-depth", uri)));
    }

    [Fact]
    public async Task NbdcopyBothWaysWithMultiConn()
    {
        string qed = _dir["c.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, "96M");
        var src = new byte[96 << 20];
        var rnd = new Random(9);
        for (int i = 0; i < 30; i++)
        {
            int off = rnd.Next(0, src.Length - 3_000_000), len = rnd.Next(1, 3_000_000);
            rnd.NextBytes(src.AsSpan(off, len));
        }
        await File.WriteAllBytesAsync(_dir["src.raw"], src);
        await using (var server = await TestServer.StartAsync(qed))
        {
            Assert.Equal(0, (await Tool.RunAsync("nbdinfo", ["--can", "multi-conn", server.Uri()])).ExitCode);
            long before = server.Server.AcceptedConnections;
            await Tool.CheckAsync("nbdcopy", "--flush", "-C", "4", "-T", "4", _dir["src.raw"], server.Uri());
            Assert.True(server.Server.AcceptedConnections - before >= 2, $"nbdcopy used {server.Server.AcceptedConnections - before} connection(s)");
            before = server.Server.AcceptedConnections;
            await Tool.CheckAsync("nbdcopy", "-C", "4", "-T", "4", server.Uri(), _dir["back.raw"]);
            Assert.True(server.Server.AcceptedConnections - before >= 2);
        }
        byte[] back = await File.ReadAllBytesAsync(_dir["back.raw"]);
        Assert.True(src.AsSpan().SequenceEqual(back), "nbdcopy round trip differs");
        Assert.Contains("No errors were found", await Tool.CheckAsync("qemu-img", "check", qed));
        await Tool.CheckAsync("qemu-img", "compare", "-f", "qed", "-F", "raw", qed, _dir["src.raw"]);
    }

    [Fact]
    public async Task FioWritesAndVerifiesThenReads()
    {
        string qed = _dir["f.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, "64M");
        await using (var server = await TestServer.StartAsync(qed))
        {
            string uri = server.Uri();
            var w = await Tool.RunAsync("fio", ["--name=w", "--ioengine=nbd", $"--uri={uri}", "--rw=randwrite", "--bs=4k", "--size=32M",
                "--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--numjobs=1"], TimeSpan.FromMinutes(2));
            Assert.True(w.ExitCode == 0 && !w.Stdout.Contains("verify:", StringComparison.Ordinal) && !w.Stderr.Contains("bad magic"), w.ToString());
            // A second connection verifies what the first wrote (4 KiB blocks as written), then a 1 MiB sequential pass.
            var v = await Tool.RunAsync("fio", ["--name=w", "--ioengine=nbd", $"--uri={uri}", "--rw=randwrite", "--bs=4k", "--size=32M", "--iodepth=32",
                "--verify=crc32c", "--verify_only=1", "--verify_fatal=1"], TimeSpan.FromMinutes(2));
            Assert.True(v.ExitCode == 0, v.ToString());
            var r = await Tool.RunAsync("fio", ["--name=r", "--ioengine=nbd", $"--uri={uri}", "--rw=read", "--bs=1M", "--size=32M", "--iodepth=8"], TimeSpan.FromMinutes(2));
            Assert.True(r.ExitCode == 0 && r.Stdout.Contains("io=32.0MiB"), r.ToString());
        }
        Assert.Contains("No errors were found", await Tool.CheckAsync("qemu-img", "check", qed));
    }
}
