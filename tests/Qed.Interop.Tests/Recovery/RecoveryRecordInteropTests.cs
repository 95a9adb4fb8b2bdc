using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Recovery;

/// <summary>
/// The recovery record (docs/recovery-record.md) between real processes: a writer killed with SIGKILL leaves a record
/// that QEMU's tools ignore and qed recovers through; QEMU opening the image read-write clears the record's bit, so qed
/// then recovers by the full check.
/// </summary>
public class RecoveryRecordInteropTests
{
    private const ulong NeedCheck = 2, RecordBit = 1;

    /// <summary>An 8 GiB image with four 2 GiB L2 tables, each holding a known cluster, closed cleanly by QEMU.</summary>
    private static TempDir Vault()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "disk.qed", "8G"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x01 0 64k", "-c", "write -P 0x02 2G 64k", "-c", "write -P 0x03 4G 64k",
            "-c", "write -P 0x04 6G 64k", "disk.qed"));
        return dir;
    }

    private static (ulong Features, ulong Autoclear) Header(TempDir dir)
    {
        var header = new byte[64];
        using (var file = File.OpenRead(dir["disk.qed"])) file.ReadExactly(header);
        return (BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32)));
    }

    /// <summary>
    /// Runs a writer that ends in a long sleep, waits until <paramref name="until"/> holds (its header bits and its
    /// last flushed write on the file), and kills it with SIGKILL (before its idle timer could clear NEED_CHECK).
    /// </summary>
    private static void KillWhen(TempDir dir, string exe, string[] args, Func<bool> until)
    {
        var info = new ProcessStartInfo(exe)
        {
            WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        string? failure = null;
        while (!until())
        {
            if (process.HasExited) { failure = "exited early"; break; }
            if (DateTime.UtcNow > deadline) { failure = $"never reached the state (header {Header(dir)})"; break; }
            Thread.Sleep(5);
        }
        if (!process.HasExited) process.Kill();
        process.WaitForExit();
        Assert.True(failure is null, $"{Path.GetFileName(exe)} {string.Join(' ', args)}: {failure}\n{stdout.Result}\n{stderr.Result}");
    }

    private static void AssertNoCorruption(TempDir dir)
    {
        var check = dir.QemuImg("check", "--output=json", "disk.qed");
        using var json = JsonDocument.Parse(check.StdOut);
        long Get(string key) => json.RootElement.TryGetProperty(key, out var v) ? v.GetInt64() : 0;
        Assert.True(Get("corruptions") == 0 && Get("check-errors") == 0, check.ToString());
    }

    [Fact]
    public void AKilledWriterIsRecoveredThroughItsRecordAndQemuReadsTheImageMeanwhile()
    {
        using var dir = Vault();
        KillWhen(dir, Tool.QedPath, ["io", "-c", "write -P 0x11 64k 64k", "-c", "write -P 0x13 4G 128k", "-c", "flush",
            "-c", "sleep 60000", "disk.qed"], () => Marked(dir, record: true) && ReadsBack(dir, "read -P 0x13 4G 128k"));

        // The record names the two tables the writer touched; QEMU ignores it and reads the image as it is.
        var info = Tool.Ok(dir.Qed("info", "disk.qed"));
        Assert.Contains("recovery record: 2 table(s) in play", info.StdOut);
        AssertNoCorruption(dir);
        Tool.Ok(dir.QemuIo("-r", "-c", "read -P 0x11 64k 64k", "-c", "read -P 0x13 4G 128k", "disk.qed"));

        // qed's read-write open recovers it; everything flushed reads back, the bits are gone, QEMU finds no corruption.
        Tool.Ok(dir.Qed("io", "-c", "read -P 0x11 64k 64k", "-c", "read -P 0x13 4G 128k", "-c", "read -P 0x02 2G 64k", "disk.qed"));
        Assert.Equal((0UL, 0UL), (Header(dir).Features & NeedCheck, Header(dir).Autoclear));
        Assert.DoesNotContain("recovery record", Tool.Ok(dir.Qed("info", "disk.qed")).StdOut);
        AssertNoCorruption(dir);
        Tool.Ok(dir.QemuIo("-c", "read -P 0x01 0 64k", "-c", "read -P 0x04 6G 64k", "disk.qed"));
    }

    [Fact]
    public void QemuWritingTheImageClearsTheRecordSoQedRecoversByTheFullCheck()
    {
        using var dir = Vault();
        KillWhen(dir, Tool.QedPath, ["io", "-c", "write -P 0x11 64k 64k", "-c", "flush", "-c", "sleep 60000", "disk.qed"],
            () => Marked(dir, record: true) && ReadsBack(dir, "read -P 0x11 64k 64k"));
        Assert.Contains("recovery record: 1 table(s) in play", Tool.Ok(dir.Qed("info", "disk.qed")).StdOut);

        // QEMU opens it read-write (clearing the auto-clear bit it does not know, then checking), writes into a table
        // the record does not name, and is killed while its own NEED_CHECK is set.
        KillWhen(dir, Tool.Require("qemu-io", "qemu-utils"), ["-c", "write -P 0x22 2G 128k", "-c", "flush", "-c", "sleep 60000", "disk.qed"],
            () => Marked(dir, record: false) && ReadsBack(dir, "read -P 0x22 2G 128k"));
        var (features, autoclear) = Header(dir);
        Assert.True((features & NeedCheck) != 0 && autoclear == 0, $"features 0x{features:x}, autoclear 0x{autoclear:x}");
        var info = Tool.Ok(dir.Qed("info", "disk.qed")).StdOut;
        Assert.Contains("dirty flag: yes", info);
        Assert.DoesNotContain("recovery record", info);

        // The stale record is not used: qed's open checks every table, and QEMU's write and qed's flushed one read back.
        Tool.Ok(dir.Qed("io", "-c", "read -P 0x22 2G 128k", "-c", "read -P 0x11 64k 64k", "disk.qed"));
        Assert.Equal(0UL, Header(dir).Features & NeedCheck);
        AssertNoCorruption(dir);
        Tool.Ok(dir.QemuIo("-r", "-c", "read -P 0x22 2G 128k", "-c", "read -P 0x03 4G 64k", "disk.qed"));
    }

    /// <summary>Whether the header has NEED_CHECK set, and the record's bit as <paramref name="record"/> says.</summary>
    private static bool Marked(TempDir dir, bool record)
    {
        var (features, autoclear) = Header(dir);
        return (features & NeedCheck) != 0 && ((autoclear & RecordBit) != 0) == record;
    }

    /// <summary>Whether a writer's write is on the file yet (its flush completes before it sleeps).</summary>
    private static bool ReadsBack(TempDir dir, string read)
    {
        var result = Tool.Run(Tool.Require("qemu-io", "qemu-utils"), dir.Path, "-r", "-U", "-c", read, "disk.qed");
        return result.ExitCode == 0 && !result.StdOut.Contains("Pattern verification failed");
    }
}
