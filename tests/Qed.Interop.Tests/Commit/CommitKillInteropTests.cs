using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Commit;

/// <summary>
/// <c>qed commit</c> killed (SIGKILL) at several moments: the overlay always reads as before (from its own clusters
/// until the base is flushed, through to the base after), and running the commit again finishes the job cleanly.
/// </summary>
public class CommitKillInteropTests
{
    [Theory]
    [InlineData(150)]
    [InlineData(300)]
    [InlineData(450)]
    [InlineData(600)]
    public void AKilledCommitLosesNothing(int killAfterMs)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "128M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x55 0 128M", "base.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x01 0 40M", "-c", "write -z 50M 8M", "-c", "write -P 0x02 70M 50M", "top.qed"));
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "top.qed", "want.raw"));

        var info = new ProcessStartInfo(Tool.QedPath) { WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("commit");
        info.ArgumentList.Add("top.qed");
        using (var process = Process.Start(info)!)
        {
            if (!process.WaitForExit(killAfterMs)) process.Kill();
            process.WaitForExit();
        }

        // Whatever moment the kill hit, the overlay reads what it read before, and neither file is corrupt (a kill in
        // the emptying step may leave leaked clusters, which the second run reclaims).
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "want.raw"));
        foreach (string name in new[] { "top.qed", "base.qed" })
        {
            var check = dir.QemuImg("check", "--output=json", name);
            using var json = System.Text.Json.JsonDocument.Parse(check.StdOut);
            long Get(string key) => json.RootElement.TryGetProperty(key, out var v) ? v.GetInt64() : 0;
            Assert.True(Get("corruptions") == 0 && Get("check-errors") == 0, check.ToString());
        }
        Tool.Ok(dir.Qed("commit", "top.qed"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "top.qed", "want.raw"));
        Tool.Ok(dir.QemuImg("compare", "-F", "raw", "base.qed", "want.raw"));
        QemuCheck.AssertClean(dir, "top.qed");
        QemuCheck.AssertClean(dir, "base.qed");
    }
}
