using System.Diagnostics;
using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Stream;

/// <summary>
/// <c>qed stream</c> on chains made by qemu-img (raw &lt;- qed &lt;- qed or qcow2 &lt;- qed, the middle layer shorter than
/// the rest): streamed whole and down to each base, the image compares equal to the original chain, checks clean, and
/// names the expected backing file; a base outside the chain changes nothing; a stream killed mid-way loses nothing.
/// </summary>
public class StreamInteropTests
{
    /// <summary>Builds base.raw (32M) &lt;- m1.qed (24M) &lt;- m2 (qed or qcow2) &lt;- top.qed and want.raw, the chain's content.</summary>
    private static string MakeChain(TempDir dir, bool qcow2Middle)
    {
        string m2 = qcow2Middle ? "m2.qcow2" : "m2.qed";
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "32M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x11 0 12M", "-c", "write -P 0x12 16M 16M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", "m1.qed", "24M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x22 1M 4M", "-c", "write -z 8M 2M", "-c", "write -P 0x23 19M 1000", "m1.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", qcow2Middle ? "qcow2" : "qed", "-b", "m1.qed", "-F", "qed", m2, "32M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 3M 4M", "-c", "write -z 20M 1M", "-c", "write -P 0x34 27M 65k", m2));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", m2, "-F", qcow2Middle ? "qcow2" : "qed", "top.qed", "32M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x44 30M 100k", "-c", "write -P 0x45 4M 8k", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));
        return m2;
    }

    private static (string? Name, string? Format) Backing(TempDir dir, string image)
    {
        using var json = JsonDocument.Parse(Tool.Ok(dir.QemuImg("info", "--output=json", image)).StdOut);
        string? Get(string key) => json.RootElement.TryGetProperty(key, out var v) ? v.GetString() : null;
        return (Get("backing-filename"), Get("backing-filename-format"));
    }

    [Theory]
    [InlineData(false, null)]
    [InlineData(false, "m2")]
    [InlineData(false, "m1.qed")]
    [InlineData(false, "base.raw")]
    [InlineData(true, null)]
    [InlineData(true, "m2")]
    [InlineData(true, "m1.qed")]
    [InlineData(true, "base.raw")]
    public void StreamedChainComparesEqualAndChecksClean(bool qcow2Middle, string? baseName)
    {
        using var dir = new TempDir();
        string m2 = MakeChain(dir, qcow2Middle);
        if (baseName == "m2") baseName = m2;
        string[] args = baseName is null ? ["stream", "-p", "top.qed"] : ["stream", "-b", baseName, "top.qed"];
        Tool.Ok(dir.Qed(args));

        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "top.qed");
        var (name, format) = Backing(dir, "top.qed");
        Assert.Equal(baseName, name);
        Assert.Equal(baseName == "base.raw" ? "raw" : null, format);
        // The layers it no longer needs can go: the image still reads the same.
        foreach (string skipped in new[] { m2, "m1.qed", "base.raw" }.TakeWhile(n => n != baseName)) File.Delete(dir[skipped]);
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("base.raw")]
    public void AChainMadeByQedStreamsToo(string? baseName)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.Qed("create", "-f", "raw", "base.raw", "16M"));
        Tool.Ok(dir.Qed("io", "-f", "raw", "-c", "write -P 0x11 0 16M", "base.raw"));
        Tool.Ok(dir.Qed("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "mid.qed"));
        Tool.Ok(dir.Qed("io", "-c", "write -P 0x22 1M 3M", "-c", "write -z 6M 1M", "-c", "discard 9M 64k", "mid.qed"));
        Tool.Ok(dir.Qed("create", "-f", "qed", "-b", "mid.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.Qed("io", "-c", "write -P 0x33 2M 100k", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));

        Tool.Ok(dir.Qed(baseName is null ? ["stream", "top.qed"] : ["stream", "-b", baseName, "top.qed"]));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "top.qed");
        Assert.Equal((baseName, baseName is null ? null : "raw"), Backing(dir, "top.qed"));
    }

    [Fact]
    public void ABaseInAnotherFolderIsRecordedRelativeToTheImage()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["img"]);
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "8M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x11 0 8M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "../base.raw", "-F", "raw", "img/mid.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x22 1M 1M", "img/mid.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "mid.qed", "-F", "qed", "img/top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x33 3M 64k", "img/top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "img/top.qed", "want.raw"));

        Tool.Ok(dir.Qed("stream", "-b", "base.raw", "-F", "raw", "img/top.qed")); // BASE as seen from the current folder
        Assert.Equal(("../base.raw", "raw"), Backing(dir, "img/top.qed"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "img/top.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "img/top.qed");
    }

    [Theory]
    [InlineData("other.raw", null, "'other.raw' is not in the backing chain of 'top.qed'")]
    [InlineData("base.raw", "qcow2", "is a raw image, not qcow2")]
    public void ABadBaseIsAOneLineErrorAndChangesNothing(string baseName, string? format, string message)
    {
        using var dir = new TempDir();
        MakeChain(dir, qcow2Middle: false);
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "other.raw", "32M"));
        string before = dir.Hash("top.qed");
        string[] args = format is null ? ["stream", "-b", baseName, "top.qed"] : ["stream", "-b", baseName, "-F", format, "top.qed"];
        var result = dir.Qed(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"qed: {message}", result.StdErr.Trim().Split('\n').Single().Replace($"qed: The base '{baseName}' ", "qed: "));
        Assert.Equal(before, dir.Hash("top.qed"));
    }

    [Theory]
    [InlineData(null, 8)]
    [InlineData(null, 64)]
    [InlineData(null, 120)]
    [InlineData("base.raw", 24)]
    [InlineData("base.raw", 96)]
    public void AKilledStreamLosesNothing(string? baseName, int killAfterGrowthMiB)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "192M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 192M", "base.raw"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "mid.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x66 8M 160M", "-c", "write -z 180M 4M", "mid.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "mid.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x01 0 16M", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));

        var info = new ProcessStartInfo(Tool.QedPath) { WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("stream");
        if (baseName != null) { info.ArgumentList.Add("-b"); info.ArgumentList.Add(baseName); }
        info.ArgumentList.Add("top.qed");
        long start = new FileInfo(dir["top.qed"]).Length;
        string killedAt;
        using (var process = Process.Start(info)!)
        {
            // Killed (SIGKILL) once the image has grown by the given amount: mid-way through the copy (170 MiB).
            var clock = Stopwatch.StartNew();
            while (!process.HasExited && new FileInfo(dir["top.qed"]).Length < start + ((long)killAfterGrowthMiB << 20) && clock.Elapsed < TimeSpan.FromMinutes(1))
                Thread.Sleep(1);
            Assert.False(process.HasExited, $"the stream finished before it grew the image by {killAfterGrowthMiB} MiB");
            process.Kill();
            process.WaitForExit();
            killedAt = $"killed at {clock.ElapsedMilliseconds} ms, file {new FileInfo(dir["top.qed"]).Length} bytes (from {start})";
        }

        // Whatever moment the kill hit: no corruption (a killed writer may leave the unused tail of its last file
        // extension as leaked clusters), the same content, and the old or the new backing file.
        var check = dir.QemuImg("check", "--output=json", "top.qed");
        using (var json = JsonDocument.Parse(check.StdOut))
        {
            long Get(string key) => json.RootElement.TryGetProperty(key, out var v) ? v.GetInt64() : 0;
            Assert.True(Get("corruptions") == 0 && Get("check-errors") == 0, check.ToString());
        }
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
        Assert.True(Backing(dir, "top.qed").Name == "mid.qed", $"the header changes last; {killedAt}"); 

        // The leaked tail (if any) is reclaimed as after any crash, then the stream is run again to finish the job.
        Tool.Ok(dir.Qed("check", "-r", "leaks", "top.qed"));
        Tool.Ok(dir.Qed(baseName is null ? ["stream", "top.qed"] : ["stream", "-b", baseName, "top.qed"]));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "top.qed", "want.raw"));
        Assert.Equal(baseName, Backing(dir, "top.qed").Name);
        QemuCheck.AssertClean(dir, "top.qed");
    }
}
