using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>The <c>qed serve</c> executable: it prints its listening line, serves, and shuts down cleanly on signals.</summary>
public sealed partial class ServeCommandTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [GeneratedRegex(@"Listening on 127\.0\.0\.1:(\d+)")]
    private static partial Regex ListeningLine();

    private static Process StartServe(params string[] args) => StartQed(["serve", .. args]);

    /// <summary>
    /// Starts qed: <c>QED_EXE</c> when set (test.sh points it at the published native build), else the JIT build
    /// next to the tests.
    /// </summary>
    private static Process StartQed(string[] args)
    {
        string? exe = Environment.GetEnvironmentVariable("QED_EXE");
        // Through env --default-signal=INT: a test run started in the background by a non-interactive shell ignores
        // SIGINT, children inherit that, and the runtime (rightly) keeps an inherited ignored SIGINT ignored, so
        // the Ctrl+C test would wait for a signal that never arrives.
        var psi = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("--default-signal=INT");
        if (string.IsNullOrEmpty(exe))
        {
            psi.ArgumentList.Add("dotnet");
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "qed.dll"));
        }
        else
        {
            psi.ArgumentList.Add(exe);
        }
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static async Task<int> WaitForPortAsync(Process p)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string? line = await p.StandardOutput.ReadLineAsync(cts.Token);
        var m = ListeningLine().Match(line ?? "");
        Assert.True(m.Success, $"unexpected first line '{line}'");
        return int.Parse(m.Groups[1].Value);
    }

    private static async Task<int> SignalAndWaitAsync(Process p, string signal)
    {
        await Tool.CheckAsync("kill", $"-{signal}", p.Id.ToString());
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            // Say whether the server really is still running (and where its threads wait) before failing.
            string state = File.Exists($"/proc/{p.Id}/status")
                ? string.Join("; ", File.ReadLines($"/proc/{p.Id}/status").Where(l => l.StartsWith("State") || l.StartsWith("Threads")))
                  + "; waiting in: " + string.Join(",", Directory.GetDirectories($"/proc/{p.Id}/task").Select(t => File.ReadAllText(Path.Combine(t, "wchan"))).Distinct())
                : "no /proc entry: the process is gone but its exit was not observed";
            try { p.Kill(); } catch (InvalidOperationException) { }
            Assert.Fail($"qed serve did not exit within 30 s of SIG{signal}: {state}");
        }
        return p.ExitCode;
    }

    private static ulong Features(string qed)
    {
        using var f = File.OpenRead(qed);
        var header = new byte[24];
        f.ReadExactly(header);
        return BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(16));
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task ServesThenShutsDownCleanlyOnSignal(string signal)
    {
        string qed = _dir["s.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, "64M");
        using var p = StartServe("-p", "0", "-x", "disk", qed);
        int port = await WaitForPortAsync(p);
        string uri = $"nbd://127.0.0.1:{port}/disk";
        // Writes leave NEED_CHECK set while the image is in use (allocation without a backing file).
        await using (var c = await PipelinedNbdClient.ConnectAsync(port, "disk"))
        {
            for (int i = 0; i < 16; i++) await c.WriteAsync(i * 3_000_000L, Enumerable.Repeat((byte)(i + 1), 100_000).ToArray());
            // Leave requests in flight and the connection open: shutdown must finish them and close the image.
            var pending = Enumerable.Range(0, 8).Select(i => c.RequestAsync(1, 50_000_000 + i * 70_000L, 65536, payload: Enumerable.Repeat((byte)0xee, 65536).ToArray())).ToList();
            await Task.WhenAll(pending);
            Assert.Equal(0, await SignalAndWaitAsync(p, signal));
        }
        Assert.Equal(0UL, Features(qed) & 2); // NEED_CHECK cleared on close
        Assert.Contains("No errors were found", await Tool.CheckAsync("qemu-img", "check", qed));
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "read -P 16 45000000 100000", "-c", $"read -P 0xee {50_000_000 + 7 * 70_000} 65536", qed);
        _ = uri;
    }

    [Fact]
    public async Task ServesSeveralExportsReadOnlyOnAUnixSocket()
    {
        string a = _dir["a.raw"], b = _dir["b.qed"], sock = _dir["nbd.sock"];
        await File.WriteAllBytesAsync(a, Enumerable.Repeat((byte)7, 1 << 20).ToArray());
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", b, "8M");
        using var p = StartServe("-r", "--socket", sock, a, b);
        string? line = await p.StandardOutput.ReadLineAsync();
        Assert.StartsWith("Listening on unix:", line);
        string list = await Tool.CheckAsync("nbdinfo", "--list", $"nbd+unix:///?socket={sock}");
        Assert.Contains("a.raw", list);
        Assert.Contains("b.qed", list);
        Assert.Equal(0, (await Tool.RunAsync("nbdinfo", ["--is", "read-only", $"nbd+unix:///a.raw?socket={sock}"])).ExitCode);
        var write = await Tool.RunAsync("qemu-io", ["-f", "raw", "-c", "write 0 512", $"nbd+unix:///a.raw?socket={sock}"]);
        Assert.True(write.ExitCode != 0 || write.Stderr.Contains("read-only", StringComparison.OrdinalIgnoreCase) || write.Stdout.Contains("failed"), write.ToString());
        Assert.Equal(0, await SignalAndWaitAsync(p, "TERM"));
        Assert.False(File.Exists(sock), "the socket file is removed on shutdown");
    }

    [Fact]
    public async Task ASecondServerOnTheSamePortFailsWithAddressInUse()
    {
        string a = _dir["a.raw"], b = _dir["b.raw"];
        await File.WriteAllBytesAsync(a, new byte[1 << 20]);
        await File.WriteAllBytesAsync(b, new byte[2 << 20]);
        using var first = StartServe("-f", "raw", "-p", "0", a);
        int port = await WaitForPortAsync(first);
        // As qemu-nbd: "qemu-nbd: Failed to find an available port: Address already in use", exit 1.
        using var second = StartServe("-f", "raw", "-p", port.ToString(), b);
        var err = second.StandardError.ReadToEndAsync();
        var output = second.StandardOutput.ReadToEndAsync();
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            try
            {
                await second.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                second.Kill();
                Assert.Fail($"a second server bound the same port and serves: {await output}");
            }
        }
        Assert.Equal(1, second.ExitCode);
        Assert.Equal("qed: Failed to find an available port: Address already in use", (await err).Trim());
        Assert.DoesNotContain("Listening", await output);
        // The first server still serves its own image, to every client.
        for (int i = 0; i < 4; i++)
            Assert.Equal("1048576", (await Tool.CheckAsync("nbdinfo", "--size", $"nbd://127.0.0.1:{port}")).Trim());
        Assert.Equal(0, await SignalAndWaitAsync(first, "TERM"));
    }

    [Fact]
    public async Task ClosedClientsAndIdleSocketsDoNotWedgeItAndSigtermIsPrompt()
    {
        string disk = _dir["big.raw"];
        using (var f = File.Create(disk)) f.SetLength(128L << 20);
        using var p = StartServe("-f", "raw", "-p", "0", "--handshake-limit", "3", "-x", "disk", disk);
        int port = await WaitForPortAsync(p);
        // One session first, so that a JIT-compiling server does not spend the handshake limit on its first clients.
        Assert.Equal("134217728", (await Tool.CheckAsync("nbdinfo", "--size", $"nbd://127.0.0.1:{port}/disk")).Trim());
        // 16 sockets that send one byte and nothing more: dropped after --handshake-limit 3.
        var idle = new List<RawNbdClient>();
        for (int i = 0; i < 16; i++)
        {
            idle.Add(await RawNbdClient.ConnectAsync(port));
            await idle[^1].WriteAsync([0]);
        }
        // Meanwhile the issue's pattern: 16 clients each send three 32 MiB READs, never read a reply, and close.
        await Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
        {
            await using var c = await RawNbdClient.ConnectAsync(port);
            await c.OpenAsync("disk");
            for (uint k = 0; k < 3; k++) await c.SendRequestAsync(0, k * (32UL << 20), 32 << 20, cookie: k);
        }));
        var info = Tool.RunAsync("nbdinfo", ["--size", $"nbd://127.0.0.1:{port}/disk"], TimeSpan.FromSeconds(10));
        Assert.Equal("134217728", (await info).Stdout.Trim());
        foreach (var c in idle)
        {
            Assert.True(await c.IsClosedAsync(TimeSpan.FromSeconds(8)), "an idle socket outlived --handshake-limit 3");
            await c.DisposeAsync();
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0, await SignalAndWaitAsync(p, "TERM"));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"SIGTERM took {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task BadArgumentsGiveOneLineErrors()
    {
        using var p = StartServe("-p", "0", _dir["missing.qed"]);
        string err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.Equal(1, p.ExitCode);
        Assert.StartsWith("qed: ", err);
        Assert.Single(err.Trim().Split('\n'));
        using var q = StartServe("--tls-cert", _dir["nope.pem"], _dir["missing.qed"]);
        err = await q.StandardError.ReadToEndAsync();
        await q.WaitForExitAsync();
        Assert.Equal(1, q.ExitCode);
        Assert.Contains("--tls-key", err);
    }
}
