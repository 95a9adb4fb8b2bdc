using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Probe;

/// <summary>
/// The format-probing hole: a raw image opened with no format named must not take a write that makes block 0 a QED or
/// qcow2 header, or its next probing open would read it as that format. qemu-io and qemu-nbd refuse such writes
/// (EPERM) and warn at open; <c>qed io</c> and <c>qed serve</c> do the same.
/// </summary>
public class ProbeGuardInteropTests
{
    /// <summary>qemu-io's warning for a probed raw image opened writable, three lines.</summary>
    private static string Warning(string name) =>
        $"WARNING: Image format was not specified for '{name}' and probing guessed raw.\n" +
        "         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n" +
        "         Specify the 'raw' format explicitly to remove the restrictions.\n";

    // Byte by byte, so qemu-io's pattern writes can spell the header; only the last write completes a magic.
    public static TheoryData<string, string[]> Headers => new()
    {
        { "qed", ["write -P 0x51 0 1", "write -P 0x45 1 1", "write -P 0x44 2 1"] },                     // "QED\0"
        { "qcow2", ["write -P 3 7 1", "write -P 0x51 0 1", "write -P 0x46 1 1", "write -P 0x49 2 1", "write -P 0xfb 3 1"] }, // "QFI\xfb", version 3
    };

    [Theory]
    [MemberData(nameof(Headers))]
    public void AProbedRawImageRefusesAHeaderInBlockZeroAsQemuIoDoes(string format, string[] writes)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "ours.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "theirs.raw", "1M"));
        string[] commands = [.. Scenario.C(writes), "-c", "write -P 7 4096 512"];
        var ours = dir.Qed(["io", .. commands, "ours.raw"]);
        var theirs = dir.QemuIo([.. commands, "theirs.raw"]);

        Assert.Equal(theirs.ExitCode, ours.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.StartsWith(Warning("theirs.raw"), theirs.StdErr);
        Assert.StartsWith(Warning("ours.raw"), ours.StdErr);
        // qemu-io: "write failed: Operation not permitted", for the last header write only; ours says the same and
        // then why (qed io prints a failed command's line on stderr, qemu-io on stdout).
        string[] ourFailures = [.. (ours.StdOut + ours.StdErr).Split('\n').Where(l => l.StartsWith("write failed", StringComparison.Ordinal))];
        string[] theirFailures = [.. theirs.StdOut.Split('\n').Where(l => l.StartsWith("write failed", StringComparison.Ordinal))];
        Assert.Equal(["write failed: Operation not permitted"], theirFailures);
        Assert.StartsWith("write failed: Operation not permitted: the write would put a " + format + " header into block 0 of 'ours.raw'", Assert.Single(ourFailures));
        Assert.Equal(writes.Length - 1, ours.StdOut.Split('\n').Count(l => l.StartsWith("wrote 1/1 bytes", StringComparison.Ordinal)));
        Assert.Contains("wrote 512/512 bytes at offset 4096", ours.StdOut); // later commands still run

        // Both files still probe as raw, and hold the same bytes.
        Assert.Contains("file format: raw", Tool.Ok(dir.QemuImg("info", "ours.raw")).StdOut);
        Assert.Equal(dir.Hash("theirs.raw"), dir.Hash("ours.raw"));
    }

    [Theory]
    [MemberData(nameof(Headers))]
    public void NamingTheFormatRawLiftsTheGuard(string format, string[] writes)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "img.raw", "1M"));
        var result = Tool.Ok(dir.Qed(["io", "-f", "raw", .. Scenario.C(writes), "img.raw"]));
        Assert.Equal("", result.StdErr); // no warning either
        // Exactly what the guard is for: qemu-img now takes the file for the other format.
        var info = dir.QemuImg("info", "img.raw");
        Assert.True(info.ExitCode != 0, $"taken for {format}, so not a valid image: {info}"); // "Could not open 'img.raw': QED cluster size is invalid"
        Assert.DoesNotContain("file format: raw", info.StdOut);
    }

    [Fact]
    public async Task QedServeWarnsAndItsClientSeesEpermAsWithQemuNbd()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "img.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "hdr.qed", "1M"));
        File.WriteAllBytes(dir["header.bin"], dir.Bytes("hdr.qed").AsSpan(0, 512).ToArray()); // a real QED header
        string sock = dir["nbd.sock"];
        var psi = new ProcessStartInfo(Tool.QedPath) { WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "serve", "-k", sock, "img.raw" }) psi.ArgumentList.Add(a);
        using var serve = Process.Start(psi)!;
        try
        {
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
                Assert.StartsWith("Listening on unix:", await serve.StandardOutput.ReadLineAsync(cts.Token));
            var write = dir.QemuIo("-f", "raw", "-c", "write -s header.bin 0 512", "-c", "write -s header.bin 4096 512", $"nbd+unix:///?socket={sock}");
            Assert.Equal(1, write.ExitCode);
            Assert.StartsWith("write failed: Operation not permitted\n", write.StdOut); // EPERM over NBD, as from qemu-nbd
            Assert.Contains("wrote 512/512 bytes at offset 4096", write.StdOut);
        }
        finally
        {
            serve.Kill();
            await serve.WaitForExitAsync();
        }
        Assert.StartsWith(Warning("img.raw"), await serve.StandardError.ReadToEndAsync());
        Assert.Contains("file format: raw", Tool.Ok(dir.QemuImg("info", "img.raw")).StdOut);
    }

    [Fact]
    public void QemuNbdRefusesTheSameWrite()
    {
        // The peer the test above mirrors: qemu-nbd on a probed raw file, its own client seeing EPERM.
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "img.raw", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "hdr.qed", "1M"));
        File.WriteAllBytes(dir["header.bin"], dir.Bytes("hdr.qed").AsSpan(0, 512).ToArray());
        string sock = dir["nbd.sock"];
        var psi = new ProcessStartInfo(Tool.Require("qemu-nbd", "qemu-utils")) { WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-k", sock, "img.raw" }) psi.ArgumentList.Add(a);
        using var nbd = Process.Start(psi)!;
        try
        {
            for (int i = 0; i < 300 && !File.Exists(sock); i++) Thread.Sleep(100);
            var write = dir.QemuIo("-f", "raw", "-c", "write -s header.bin 0 512", $"nbd+unix:///?socket={sock}");
            Assert.Equal("write failed: Operation not permitted\n", write.StdOut);
        }
        finally
        {
            nbd.Kill();
            nbd.WaitForExit();
        }
        Assert.StartsWith(Warning("img.raw"), nbd.StandardError.ReadToEnd());
    }
}
