using System.Buffers.Binary;
using System.Text;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>STARTTLS with X.509: libnbd (nbds://), QEMU's tls-creds-x509, the TLS-required mode and state reset.</summary>
public sealed class TlsTests : IAsyncLifetime
{
    private const uint ErrTlsReqd = 0x80000005, ErrInvalid = 0x80000003;
    private readonly TempDir _dir = new();
    private string _pki = "";
    private string _image = "";

    public async Task InitializeAsync()
    {
        _pki = await TestCertificates.CreateAsync(_dir);
        _image = _dir["t.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", _image, "32M");
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 0x42 1M 2M", _image);
    }

    public Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }

    private Task<TestServer> StartAsync(NbdTlsMode mode) =>
        TestServer.StartAsync(_image, configure: o => o with { TlsMode = mode, Certificate = TestCertificates.Load(_pki) });

    [Fact]
    public async Task LibnbdAndQemuConnectOverTls()
    {
        await using var server = await StartAsync(NbdTlsMode.Required);
        string uri = $"nbds://127.0.0.1:{server.Port}/disk?tls-certificates={_pki}";
        string info = await Tool.CheckAsync("nbdinfo", uri);
        Assert.Contains("with TLS", info);
        Assert.Contains("export-size: 33554432", info);
        string map = await Tool.CheckAsync("nbdinfo", "--map", uri);
        Assert.Equal([(0L, 1048576L, 3L), (1048576L, 2097152L, 0L), (3145728L, 30408704L, 3L)],
            MapModel.FromNbdinfo(map).Select(r => (r.Start, r.Length, r.Value)));

        string[] qemuTls = ["--object", $"tls-creds-x509,id=tls0,dir={_pki},endpoint=client", "--image-opts"];
        string opts = $"driver=nbd,host=127.0.0.1,port={server.Port},export=disk,tls-creds=tls0";
        string qinfo = await Tool.CheckAsync("qemu-img", ["info", .. qemuTls, opts]);
        Assert.Contains("virtual size: 32 MiB", qinfo);
        var io = await Tool.RunAsync("qemu-io", [.. qemuTls, $"driver=raw,file.{opts.Replace(",", ",file.")}",
            "-c", "read -P 0x42 1M 2M", "-c", "write -P 0x77 8M 64k", "-c", "read -P 0x77 8M 64k"]);
        Assert.True(io.ExitCode == 0 && !io.Stdout.Contains("fail", StringComparison.OrdinalIgnoreCase), io.ToString());
    }

    [Fact]
    public async Task PlaintextClientsAreRefusedWhenTlsIsRequired()
    {
        await using var server = await StartAsync(NbdTlsMode.Required);
        var plain = await Tool.RunAsync("nbdinfo", [server.Uri()]);
        Assert.NotEqual(0, plain.ExitCode);

        await using (var c = await RawNbdClient.ConnectAsync(server.Port))
        {
            await c.GreetAsync();
            foreach (uint option in new uint[] { 8, 3, 7, 10 })
            {
                await c.SendOptionAsync(option, option == 7 ? RawNbdClient.GoData("disk") : option == 10 ? RawNbdClient.MetaData("disk", "base:allocation") : []);
                Assert.Equal(ErrTlsReqd, (await c.ReadOptionReplyAsync()).Type);
            }
            await c.SendOptionAsync(1, Encoding.UTF8.GetBytes("disk")); // EXPORT_NAME cannot fail politely
            Assert.True(await c.IsClosedAsync());
        }
    }

    [Fact]
    public async Task StartTlsForgetsEverythingNegotiatedBefore()
    {
        await using var server = await StartAsync(NbdTlsMode.Optional);
        await using var c = await RawNbdClient.ConnectAsync(server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(8, []); // plaintext STRUCTURED_REPLY, as a man in the middle could inject (CVE-2021-3716)
        Assert.Equal(1u, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(5, []);
        Assert.Equal(1u, (await c.ReadOptionReplyAsync()).Type);
        await c.StartTlsAsync();
        await c.SendOptionAsync(5, []); // a second STARTTLS
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(10, RawNbdClient.MetaData("disk", "base:allocation")); // needs STRUCTURED_REPLY again
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(7, RawNbdClient.GoData("disk"));
        var go = await c.ReadOptionRepliesAsync();
        Assert.Equal(1u, go[^1].Type);
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(go.Single(r => r.Type == 3 && r.Data.Length == 12).Data.AsSpan(10));
        Assert.Equal(0, flags & 0x80); // no DF: structured replies were forgotten
        await c.SendRequestAsync(0, 1 << 20, 512, cookie: 4);
        var reply = await c.ReadReplyAsync();
        Assert.Equal((RawNbdClient.SimpleMagic, 4UL, 0u), (reply.Magic, reply.Cookie, reply.Error));
        Assert.All(await c.ReadExactAsync(512), b => Assert.Equal(0x42, b));
    }
}
