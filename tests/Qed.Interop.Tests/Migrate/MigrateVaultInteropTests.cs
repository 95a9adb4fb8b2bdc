using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Migrate;

/// <summary>
/// <c>qed migrate</c> on a vault made by qemu-img and qemu-io (<see cref="Vault"/>), judged by qemu-img: every target
/// passes qemu-img check, compares identical with its source, and keeps its chain as qemu-img info --backing-chain
/// shows it; the corrupt image is reported and skipped (exit 2) or salvaged (exit 3); no source changes by a byte.
/// </summary>
public class MigrateVaultInteropTests
{
    private static JsonElement Report(Vault vault, string target)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(vault.Dir[target], "qed-migrate-report.json")));
        return doc.RootElement.Clone();
    }

    private static JsonElement EntryFor(JsonElement report, Vault vault, string source) =>
        report.GetProperty("entries").EnumerateArray().Single(e => e.GetProperty("source").GetString() == Path.Combine(vault.Root, source));

    [Fact]
    public void OneRunMigratesEveryImageAndSkipsTheCorruptOne()
    {
        using var vault = new Vault();
        var run = vault.Dir.Qed("migrate", "-j", "2", "vault", "out");
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("bad.qed: corrupt: its check found 1 corruption and 0 check errors", run.StdOut);
        Assert.Contains($"Migrated {vault.Images.Count + vault.Others.Count} of {vault.Images.Count + vault.Others.Count + 1} images", run.StdOut);
        vault.AssertTargetTree(vault.Dir["out"], "qcow2", flat: false);
        Assert.False(File.Exists(vault.Dir["out/bad.qcow2"]));
        vault.AssertSourcesUnchanged();

        var report = Report(vault, "out");
        // Every qcow2 target's own check ran, and was clean, before it counted.
        foreach (var entry in report.GetProperty("entries").EnumerateArray().Where(e => e.GetProperty("verified").GetBoolean()))
            Assert.Equal(entry.GetProperty("target-format").GetString() == "qcow2" ? "clean" : "none (raw has no consistency check)",
                entry.GetProperty("check").GetString());
        var bad = EntryFor(report, vault, "bad.qed");
        Assert.Equal("corrupt", bad.GetProperty("status").GetString());
        Assert.False(bad.GetProperty("verified").GetBoolean());
        var dirty = EntryFor(report, vault, "dirty.qed");
        Assert.True(dirty.GetProperty("source-dirty").GetBoolean());
        Assert.Equal("migrated", dirty.GetProperty("status").GetString());
        var top = EntryFor(report, vault, "chains/c0/sub/top.qed");
        Assert.Equal([vault.Dir["vault/chains/c0/sub/top.qed"], vault.Dir["vault/chains/c0/sub/mid.qed"], vault.Dir["vault/chains/c0/base.qed"]],
            top.GetProperty("chain").EnumerateArray().Select(e => e.GetString()!).ToArray());
        Assert.Equal(vault.SourceHashes["chains/c0/sub/top.qed"], top.GetProperty("source-sha256").GetString()!.ToUpperInvariant());
    }

    [Fact]
    public void SalvageConvertsTheCorruptImageWithTheUnreadableClusterAsZeroes()
    {
        using var vault = new Vault();
        var run = vault.Dir.Qed("migrate", "--salvage", "--report", "r.json", "vault", "out");
        Assert.True(run.ExitCode == 3, run.ToString());
        vault.AssertTargetTree(vault.Dir["out"], "qcow2", flat: false, withCorrupt: true);
        // The readable data came over; the cluster behind the broken entry reads as zeroes, as qemu-img --salvage makes it.
        Tool.Ok(vault.Dir.QemuIo("-c", "read -P 0xbb 0 64k", "-c", "read -P 0 64k 64k", "-c", "read -P 0xcc 1M 64k", "out/bad.qcow2"));
        vault.AssertSourcesUnchanged();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(vault.Dir["r.json"]));
        var bad = doc.RootElement.GetProperty("entries").EnumerateArray().Single(e => e.GetProperty("source").GetString()!.EndsWith("/bad.qed", StringComparison.Ordinal));
        Assert.Equal("salvaged", bad.GetProperty("status").GetString());
        var range = Assert.Single(bad.GetProperty("salvaged").EnumerateArray());
        Assert.Equal(65536, range.GetProperty("offset").GetInt64());
        Assert.Equal(65536, range.GetProperty("length").GetInt64());

        // A re-run keeps the salvaged result as it is, and still says so (exit 3, not 0).
        var before = Stat(vault.Dir["out"]);
        var again = vault.Dir.Qed("migrate", "--report", "r.json", "vault", "out");
        Assert.True(again.ExitCode == 3, again.ToString());
        Assert.Contains("0 converted", again.StdOut);
        Assert.Equal(before, Stat(vault.Dir["out"]));
    }

    [Fact]
    public void RawTargetsAreFlatAndEqualToTheirSources()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        var run = vault.Dir.Qed("migrate", "-O", "raw", "vault", "out");
        Assert.True(run.ExitCode == 0, run.ToString());
        vault.AssertTargetTree(vault.Dir["out"], "raw", flat: true);
        Assert.False(File.Exists(vault.Dir["out/rawbase.img"])); // flat targets need no backing files
        vault.AssertSourcesUnchanged();
    }

    [Fact]
    public void FlattenMakesStandaloneQcow2Targets()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        var run = vault.Dir.Qed("migrate", "--flatten", "vault", "out");
        Assert.True(run.ExitCode == 0, run.ToString());
        vault.AssertTargetTree(vault.Dir["out"], "qcow2", flat: true);
    }

    [Fact]
    public void Qcow2OptionsReachEveryTarget()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        var run = vault.Dir.Qed("migrate", "-o", "cluster_size=4k,lazy_refcounts=on,refcount_bits=8", "vault", "out");
        Assert.True(run.ExitCode == 0, run.ToString());
        vault.AssertTargetTree(vault.Dir["out"], "qcow2", flat: false);
        using var info = JsonDocument.Parse(Tool.Ok(vault.Dir.QemuImg("info", "--output=json", "out/chains/c0/sub/top.qcow2")).StdOut);
        Assert.Equal(4096, info.RootElement.GetProperty("cluster-size").GetInt32());
        var specific = info.RootElement.GetProperty("format-specific").GetProperty("data");
        Assert.True(specific.GetProperty("lazy-refcounts").GetBoolean());
        Assert.Equal(8, specific.GetProperty("refcount-bits").GetInt32());
    }

    [Fact]
    public void ARunOfAFinishedMigrationRewritesNothing()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        Tool.Ok(vault.Dir.Qed("migrate", "vault", "out"));
        var before = Stat(vault.Dir["out"]);
        var again = Tool.Ok(vault.Dir.Qed("migrate", "vault", "out"));
        Assert.Contains($"0 converted, {vault.Images.Count + vault.Others.Count} up to date", again.StdOut);
        // The report is state, not a target: it says "up-to-date" now.
        before.Remove("qed-migrate-report.json");
        var after = Stat(vault.Dir["out"]);
        after.Remove("qed-migrate-report.json");
        Assert.Equal(before, after);
    }

    [Fact]
    public void AChangedSourceIsMigratedAgainWithEveryOverlayAboveIt()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        Tool.Ok(vault.Dir.Qed("migrate", "vault", "out"));
        var before = Stat(vault.Dir["out"]);
        Tool.Ok(vault.Dir.QemuIo("-c", "write -P 0xee 8M 64k", "vault/chains/c0/sub/mid.qed"));
        var again = Tool.Ok(vault.Dir.Qed("migrate", "vault", "out"));
        Assert.Contains("2 converted", again.StdOut); // mid and the top over it
        var after = Stat(vault.Dir["out"]);
        foreach (var (name, stat) in before)
        {
            bool redone = name is "chains/c0/sub/mid.qcow2" or "chains/c0/sub/top.qcow2";
            if (name.EndsWith(".json", StringComparison.Ordinal)) continue;
            Assert.True(redone != (after[name] == stat), $"{name}: {stat} -> {after[name]}");
        }
        Tool.Ok(vault.Dir.QemuImg("compare", "vault/chains/c0/sub/top.qed", "out/chains/c0/sub/top.qcow2"));
    }

    [Fact]
    public void AFileAlreadyUnderATargetNameIsLeftAlone()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        Directory.CreateDirectory(vault.Dir["out"]);
        File.WriteAllText(vault.Dir["out/standalone.qcow2"], "not yours");
        var run = vault.Dir.Qed("migrate", "vault", "out");
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("standalone.qed: failed: ", run.StdOut);
        Assert.Equal("not yours", File.ReadAllText(vault.Dir["out/standalone.qcow2"]));
    }

    [Fact]
    public async Task AnImageInUseByAWriterIsNotReadAndIsReported()
    {
        using var vault = new Vault(corrupt: false, chains: 0);
        // A writer (as a running VM would be) holds standalone.qed: QEMU's locks keep the migration from reading it half made.
        await using (var writer = await DiskImage.OpenAsync(vault.Dir["vault/standalone.qed"]))
        {
            var run = vault.Dir.Qed("migrate", "vault", "out");
            Assert.True(run.ExitCode == 2, run.ToString());
            Assert.Contains("standalone.qed: failed: ", run.StdOut);
            Assert.Contains("lock", run.StdOut);
            Assert.False(File.Exists(vault.Dir["out/standalone.qcow2"]));
        }
        // Once the writer is gone, a re-run does the rest.
        var again = vault.Dir.Qed("migrate", "vault", "out");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("1 converted", again.StdOut);
    }

    [Fact]
    public void DryRunPrintsThePlanAndWritesNothing()
    {
        using var vault = new Vault(corrupt: false, chains: 1);
        var run = Tool.Ok(vault.Dir.Qed("migrate", "--dry-run", "vault", "out"));
        Assert.Contains("vault/chains/c0/sub/top.qed -> out/chains/c0/sub/top.qcow2 (qcow2, backing mid.qcow2 (qcow2))", run.StdOut);
        Assert.Contains("vault/rawbase.img -> out/rawbase.img (raw, brought along)", run.StdOut);
        Assert.False(Directory.Exists(vault.Dir["out"]));
    }

    [Theory]
    [InlineData(new[] { "migrate", "vault" }, "Expecting one or more sources and a target folder")]
    [InlineData(new[] { "migrate", "nowhere", "out" }, "Could not open 'nowhere': No such file or directory")]
    [InlineData(new[] { "migrate", "-O", "vmdk", "vault", "out" }, "Unsupported target format 'vmdk' (use qcow2 or raw)")]
    [InlineData(new[] { "migrate", "-j", "0", "vault", "out" }, "Invalid number of jobs: 0 (at least 1)")]
    [InlineData(new[] { "migrate", "-o", "bogus=1", "vault", "out" }, "Invalid parameter 'bogus'")]
    [InlineData(new[] { "migrate", "vault/rawbase.img", "out" }, "'vault/rawbase.img' is not a QED image (its format is raw)")]
    [InlineData(new[] { "migrate", "-o", "cluster_size=1000", "vault", "out" }, "Invalid qcow2 options: Cluster size must be a power of two between 512 and 2048k")]
    public void BadUsageIsOneLineAndExitOne(string[] args, string message)
    {
        using var vault = new Vault(corrupt: false, chains: 0);
        var run = vault.Dir.Qed(args);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"qed: {message}\n", run.StdErr);
        Assert.False(Directory.Exists(vault.Dir["out"]));
    }

    /// <summary>Inode and modification time of every file under the folder.</summary>
    internal static Dictionary<string, string> Stat(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(
            f => Path.GetRelativePath(folder, f),
            f => $"{Inode(f)} {File.GetLastWriteTimeUtc(f):o}");

    private static string Inode(string path)
    {
        var r = Tool.Run("stat", Path.GetDirectoryName(path)!, "-c", "%i", path);
        return r.StdOut.Trim();
    }
}
