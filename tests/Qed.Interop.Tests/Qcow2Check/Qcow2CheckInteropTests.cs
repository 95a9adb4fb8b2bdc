using System.Text.Json;
using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Qcow2Check;

/// <summary>
/// <c>qed check</c> against <c>qemu-img check</c> on qcow2 images made by qemu-img (and qed), clean and with bytes
/// poked: leaks, refcounts too low or zero, L2 entries past the end of the file, unaligned or pointing into the L1 or
/// refcount table, broken L1 and refcount table entries. Both must agree in exit code, text and JSON; after
/// <c>qed check -r</c>, qemu-img must find the image clean (or, where qemu-img itself cannot repair with
/// <c>-r leaks</c>, fail alike), and every guest byte that read before reads the same.
/// </summary>
public sealed class Qcow2CheckInteropTests(Qcow2CheckImages images) : IClassFixture<Qcow2CheckImages>
{
    private const ulong Copied = 1UL << 63;

    /// <summary>A corruption of a base image; <paramref name="RepairsLikeQemu"/>: qemu-img's -r prints the same.</summary>
    private sealed record Case(string Base, Action<Qcow2Bytes> Corrupt, bool RepairsLikeQemu = false);

    private static readonly Dictionary<string, Case> Cases = BuildCases();

    private static Dictionary<string, Case> BuildCases()
    {
        var cases = new Dictionary<string, Case>();
        foreach (string b in Qcow2CheckImages.Bases) cases[$"{b}: clean"] = new(b, _ => { }, RepairsLikeQemu: true);
        foreach (string b in new[] { "default", "k4", "r8", "r64", "v2", "snap", "by-qed" })
        {
            // Refcount too high: a leak (not for snap, where the cluster is shared and so has refcount 2 already).
            if (b != "snap") cases[$"{b}: refcount too high"] = new(b, i => i.SetRefcount(i.FirstData().Host >> i.ClusterBits, 2), RepairsLikeQemu: true);
            cases[$"{b}: refcount zero"] = new(b, i => i.SetRefcount(i.FirstData().Host >> i.ClusterBits, 0), RepairsLikeQemu: true);
            cases[$"{b}: cluster referenced twice"] = new(b, i => i.Poke(i.FreeL2Entry(), i.U64(i.FirstData().At)), RepairsLikeQemu: b != "snap");
            cases[$"{b}: L2 entry past EOF"] = new(b, i => i.Poke(i.FreeL2Entry(), Copied | 0x4000_0000UL));
            cases[$"{b}: L2 entry unaligned"] = new(b, i => i.Poke(i.FreeL2Entry(), i.U64(i.FirstData().At) + 0x200));
            cases[$"{b}: L2 entry into the L1 table"] = new(b, i => i.Poke(i.FreeL2Entry(), Copied | (ulong)i.L1));
            cases[$"{b}: L2 entry into the refcount table"] = new(b, i => i.Poke(i.FreeL2Entry(), Copied | (ulong)i.RefTable));
        }
        cases["r1: refcount zero"] = new("r1", i => i.SetRefcount(i.FirstData().Host >> i.ClusterBits, 0), RepairsLikeQemu: true);
        cases["r1: cluster referenced twice (refcount overflow)"] = new("r1", i => i.Poke(i.FreeL2Entry(), i.U64(i.FirstData().At)));
        cases["m2: L2 entry past EOF"] = new("m2", i => i.Poke(i.FreeL2Entry(), Copied | 0x4000_0000UL));
        cases["compressed: copied flag on a compressed entry"] = new("compressed", i => i.Poke(i.L2Entry(0, 0), i.U64(i.L2Entry(0, 0)) | Copied));
        cases["compressed: refcount too high"] = new("compressed", i => i.SetRefcount((long)(i.U64(i.L2Entry(0, 0)) & 0xffff_ffffUL) >> i.ClusterBits, 3), RepairsLikeQemu: true);
        cases["overlay: L2 entry past EOF"] = new("overlay", i => i.Poke(i.FreeL2Entry(), Copied | 0x4000_0000UL));
        cases["prealloc: zero cluster unaligned"] = new("prealloc", i => i.Poke(i.L2Entry(0, 3), i.U64(i.L2Entry(0, 3)) + 0x200));
        cases["two-tables: L1 entry past EOF"] = new("two-tables", i => i.Poke(i.L1 + 8, Copied | 0x4000_0000UL));
        cases["two-tables: L1 entry into the L1 table"] = new("two-tables", i => i.Poke(i.L1 + 8, Copied | (ulong)i.L1));
        cases["two-tables: L1 entry into the refcount table"] = new("two-tables", i => i.Poke(i.L1 + 8, Copied | (ulong)i.RefTable));
        cases["two-tables: two L1 entries share a table"] = new("two-tables", i => i.Poke(i.L1 + 8, i.U64(i.L1)));
        cases["two-tables: refcount table entry zero"] = new("two-tables", i => i.Poke(i.RefTable, 0));
        cases["two-tables: refcount block unaligned"] = new("two-tables", i => i.Poke(i.RefTable, i.U64(i.RefTable) + 0x200));
        cases["two-tables: refcount block past EOF"] = new("two-tables", i => i.Poke(i.RefTable + 8, 0x1000_0000));
        cases["two-tables: refcount block into the L1 table"] = new("two-tables", i => i.Poke(i.RefTable + 8, (ulong)i.L1));
        return cases;
    }

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    private string Make(string name, string suffix = "")
    {
        var c = Cases[name];
        var image = new Qcow2Bytes(File.ReadAllBytes(images.Dir[c.Base + ".qcow2"]));
        c.Corrupt(image);
        string file = $"case-{Regex.Replace(name, "[^a-zA-Z0-9]+", "-")}{suffix}-{Guid.NewGuid():N}.qcow2";
        File.WriteAllBytes(images.Dir[file], image.Bytes);
        return file;
    }

    [Fact]
    public void ThereAreManyCorruptedImages() => Assert.True(Cases.Count(c => !c.Key.EndsWith("clean", StringComparison.Ordinal)) >= 40);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void TextJsonAndExitCodeMatchQemuImg(string name)
    {
        string file = Make(name);
        string hash = images.Dir.Hash(file);
        var qemu = images.Dir.QemuImg("check", file);
        var ours = images.Dir.Qed("check", file);
        Assert.True(qemu.StdOut == ours.StdOut && qemu.ExitCode == ours.ExitCode, $"{name}\n{qemu}\n{ours}");
        var qemuJson = images.Dir.QemuImg("check", "--output=json", file);
        var oursJson = images.Dir.Qed("check", "--output=json", file);
        Assert.True(qemuJson.StdOut == oursJson.StdOut && qemuJson.ExitCode == oursJson.ExitCode, $"{name}\n{qemuJson}\n{oursJson}");
        var forced = images.Dir.Qed("check", "-f", "qcow2", "-U", file);
        Assert.Equal(ours.StdOut, forced.StdOut);
        Assert.Equal(images.Dir.Hash(file), hash); // a check without -r changes nothing
        Assert.DoesNotContain("   at ", ours.StdErr);
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void RepairAllLeavesQemuImgCleanAndKeepsReadableData(string name)
    {
        string file = Make(name), before = Make(name, "-before"), theirs = Make(name, "-qemu");
        bool readable = images.Dir.QemuImg("compare", "-f", "qcow2", "-F", "qcow2", before, before).ExitCode == 0;

        var ours = images.Dir.Qed("check", "-r", "all", file);
        Assert.True(ours.ExitCode == 0, $"{name}: qed check -r all\n{ours}");
        Assert.DoesNotContain("   at ", ours.StdErr);
        var after = images.Dir.QemuImg("check", file);
        Assert.True(after.ExitCode == 0, $"{name}: qemu-img check after qed check -r all\n{after}\n{ours}");
        if (readable)
        {
            var compare = images.Dir.QemuImg("compare", "-f", "qcow2", "-F", "qcow2", before, file);
            Assert.True(compare.ExitCode == 0, $"{name}: the repair changed what the guest reads\n{compare}\n{ours}");
        }
        if (Cases[name].RepairsLikeQemu)
        {
            var qemu = images.Dir.QemuImg("check", "-r", "all", theirs);
            Assert.True(qemu.StdOut == ours.StdOut, $"{name}\n{qemu}\n{ours}");
        }
        // The repaired image checks clean for us too, with the same counts as qemu-img's.
        Assert.Equal(images.Dir.QemuImg("check", "--output=json", file).StdOut, images.Dir.Qed("check", "--output=json", file).StdOut);
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void RepairLeaksEndsAsQemuImgsDoes(string name)
    {
        string file = Make(name), before = Make(name, "-before"), theirs = Make(name, "-qemu");
        var qemu = images.Dir.QemuImg("check", "-r", "leaks", theirs);
        var ours = images.Dir.Qed("check", "-r", "leaks", file);
        Assert.True(qemu.ExitCode == ours.ExitCode, $"{name}\n{qemu}\n{ours}");
        Assert.DoesNotContain("   at ", ours.StdErr);
        Assert.Equal(qemu.StdOut == "" ? "" : "counts", ours.StdOut == "" ? "" : "counts");
        // The last line says why a repair could not run ("Check failed: ..."), or the last problem left, alike.
        Assert.Equal(LastLine(qemu.StdErr, "qemu-img: "), LastLine(ours.StdErr, "qed: "));
        // Afterwards qemu-img finds the same in both (clean where -r leaks could do it all).
        var qemuAfter = images.Dir.QemuImg("check", "--output=json", theirs);
        var oursAfter = images.Dir.QemuImg("check", "--output=json", file);
        Assert.True(qemuAfter.ExitCode == oursAfter.ExitCode, $"{name}\n{qemuAfter}\n{oursAfter}");
        Assert.Equal(Counts(qemuAfter.StdOut), Counts(oursAfter.StdOut));
        if (Cases[name].RepairsLikeQemu) Assert.Equal(qemu.StdOut, ours.StdOut);
        if (images.Dir.QemuImg("compare", "-f", "qcow2", "-F", "qcow2", before, before).ExitCode == 0)
            Tool.Ok(images.Dir.QemuImg("compare", "-f", "qcow2", "-F", "qcow2", before, file));
    }

    private static string LastLine(string text, string program)
    {
        string last = text.TrimEnd('\n').Split('\n')[^1];
        return last.StartsWith(program, StringComparison.Ordinal) ? last[program.Length..] : last.StartsWith("Check failed", StringComparison.Ordinal) ? last : "";
    }

    private static string Counts(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return string.Join(",", new[] { "corruptions", "leaks", "check-errors" }.Select(k => doc.RootElement.TryGetProperty(k, out var v) ? v.GetInt64() : 0));
    }

    [Fact]
    public void RepairClearsTheDirtyBit()
    {
        string file = Make("dirty: clean");
        Assert.Equal(1, images.Dir.Bytes(file)[79] & 1);
        Tool.Ok(images.Dir.Qed("check", "-r", "all", file));
        Assert.Equal(0, images.Dir.Bytes(file)[79] & 1);
        Tool.Ok(images.Dir.QemuImg("check", file));
    }

    /// <summary>Broken headers: a one-line error naming the field and a non-zero exit, no stack trace, no change.</summary>
    [Theory]
    [InlineData(36, 4, 0xffff_ffffUL, "l1_size")]
    [InlineData(40, 8, 0x30001UL, "l1_table_offset")]
    [InlineData(48, 8, 0x7fff_0000UL, "refcount_table_offset")]
    [InlineData(56, 4, 0UL, "refcount_table_clusters")]
    [InlineData(60, 4, 70000UL, "nb_snapshots")]
    [InlineData(20, 4, 40UL, "cluster_bits")]
    [InlineData(96, 4, 7UL, "refcount_order")]
    [InlineData(4, 4, 9UL, "version")]
    public void BadHeadersGetOneLineAndExitOne(int offset, int width, ulong value, string field)
    {
        var bytes = File.ReadAllBytes(images.Dir["default.qcow2"]);
        for (int i = 0; i < width; i++) bytes[offset + i] = (byte)(value >> (8 * (width - 1 - i)));
        string file = $"bad-{field}-{Guid.NewGuid():N}.qcow2";
        File.WriteAllBytes(images.Dir[file], bytes);
        string hash = images.Dir.Hash(file);
        foreach (var args in new[] { new[] { "check", file }, ["check", "-r", "all", file], ["check", "-f", "qcow2", "--output=json", file] })
        {
            var ours = images.Dir.Qed(args);
            Assert.Equal(1, ours.ExitCode);
            Assert.Equal("", ours.StdOut);
            Assert.Single(ours.StdErr.TrimEnd('\n').Split('\n'));
            Assert.Contains(field, ours.StdErr);
            Assert.Equal(hash, images.Dir.Hash(file));
        }
    }
}
