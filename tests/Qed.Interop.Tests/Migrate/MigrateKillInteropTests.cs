using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Migrate;

/// <summary>
/// <c>qed migrate</c> killed with SIGKILL at random points and run again: after every kill, whatever lies under a final
/// name is a verified copy (qemu-img check clean, qemu-img compare identical); the last run finishes the same tree a
/// run never killed makes, and sources never change.
/// </summary>
public class MigrateKillInteropTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void KilledRunsFinishTheSameVerifiedTree(int seed)
    {
        using var vault = new Vault(corrupt: false, chains: 3, dataMiB: 12);
        var random = new Random(seed);
        // A run never cut off first: its time sets the kill points, so they fall inside a run however fast the build
        // under test is (the native build migrates this vault several times faster than the JIT one).
        var clock = Stopwatch.StartNew();
        Tool.Ok(vault.Dir.Qed("migrate", "-j", "2", "vault", "clean"));
        int full = (int)Math.Max(40, clock.ElapsedMilliseconds);
        var runs = new List<string>();
        int killed = 0;
        // At least four rounds, and on until one is cut off: a machine whose load falls after the timed run (other
        // test processes starting up beside this one) can finish every round inside its delay. A round that finished
        // before any was cut off was a whole run from nothing, so it times the next delays, and its tree is removed so
        // the next round starts from nothing again.
        for (int round = 0; round < 4 || killed == 0; round++)
        {
            Assert.True(round < 12, $"no run was cut off in {round} rounds: {string.Join(", ", runs)}");
            int delay = random.Next(full / 20 + 1, full * 9 / 10);
            clock.Restart();
            var process = Start(vault.Dir.Path, "migrate", "-j", "2", "vault", "out");
            bool finished = process.WaitForExit(delay);
            if (!finished)
            {
                process.Kill(); // SIGKILL
                process.WaitForExit();
                killed++;
            }
            runs.Add($"{(finished ? "finished" : "killed")} after {clock.ElapsedMilliseconds} ms (delay {delay} ms of {full})");
            AssertFinalNamesVerified(vault);
            vault.AssertSourcesUnchanged();
            if (finished && killed == 0)
            {
                Assert.Equal(0, process.ExitCode);
                full = (int)Math.Max(40, clock.ElapsedMilliseconds);
                Directory.Delete(vault.Dir["out"], recursive: true);
            }
        }
        var last = vault.Dir.Qed("migrate", "-j", "2", "vault", "out");
        Assert.True(last.ExitCode == 0, last.ToString());
        vault.AssertTargetTree(vault.Dir["out"], "qcow2", flat: false);
        vault.AssertSourcesUnchanged();

        // The same files as the run never cut off.
        Assert.Equal(Listing(vault.Dir["clean"]), Listing(vault.Dir["out"]));

        // And a run after that rewrites nothing.
        var before = MigrateVaultInteropTests.Stat(vault.Dir["out"]);
        var again = Tool.Ok(vault.Dir.Qed("migrate", "-j", "2", "vault", "out"));
        Assert.Contains(" 0 converted", again.StdOut);
        var after = MigrateVaultInteropTests.Stat(vault.Dir["out"]);
        before.Remove("qed-migrate-report.json");
        after.Remove("qed-migrate-report.json");
        Assert.Equal(before, after);
    }

    private static IEnumerable<string> Listing(string folder) =>
        Directory.EnumerateFiles(folder, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Select(f => Path.GetRelativePath(folder, f)).Order(StringComparer.Ordinal);

    /// <summary>Every target under its final name checks clean and reads as its source.</summary>
    private static void AssertFinalNamesVerified(Vault vault)
    {
        if (!Directory.Exists(vault.Dir["out"])) return;
        foreach (string file in Directory.EnumerateFiles(vault.Dir["out"], "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(vault.Dir["out"], file);
            if (Path.GetFileName(rel).StartsWith('.') || rel.StartsWith("qed-migrate-report.json", StringComparison.Ordinal)) continue;
            string source = vault.Images.Any(i => Vault.TargetOf(i.Source, "qcow2") == rel)
                ? Path.ChangeExtension(rel, ".qed") : rel;
            string format = rel.EndsWith(".img", StringComparison.Ordinal) ? "raw" : "qcow2";
            if (format == "qcow2") Tool.Ok(Tool.QemuImg(vault.Root, "check", "-f", "qcow2", file));
            Tool.Ok(Tool.QemuImg(vault.Root, "compare", "-F", format, source, file));
        }
    }

    private static Process Start(string cwd, params string[] args)
    {
        var info = new ProcessStartInfo(Tool.QedPath) { WorkingDirectory = cwd, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }
}
