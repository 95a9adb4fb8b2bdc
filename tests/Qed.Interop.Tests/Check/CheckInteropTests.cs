using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using static Qed.Interop.Tests.Check.Tools;
using Qed.Formats.Qed;

namespace Qed.Interop.Tests.Check;

/// <summary>Images made by qemu-img and qemu-io once for the class, then copied and corrupted by each case.</summary>
public sealed class CheckImages : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("qed-check-interop").FullName;

    /// <summary>Guest offsets written in each base image, one cluster probed at each (plus unwritten ones).</summary>
    public Dictionary<string, long[]> Probes { get; } = new();

    public CheckImages()
    {
        // The reference's c.qed: L1[0] -> table, L2[0], L2[16] and L2[16368] allocated.
        Ok("qemu-img", Dir, "create", "-q", "-f", "qed", "c.qed", "1G");
        Ok("qemu-io", Dir, "-f", "qed", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 1M 4k", "-c", "write -P 0x11 1023M 64k", "c.qed");
        Probes["c.qed"] = [0, 64 << 10, 1 << 20, 1023L << 20, 512L << 20];
        // Small clusters and tables: three L2 tables.
        Ok("qemu-img", Dir, "create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "s.qed", "64M");
        Ok("qemu-io", Dir, "-f", "qed", "-c", "write -P 0x21 0 8k", "-c", "write -P 0x22 5M 4k", "-c", "write -P 0x23 40M 12k", "s.qed");
        Probes["s.qed"] = [0, 4096, 8192, 5L << 20, 40L << 20, (40L << 20) + 8192, 1L << 20];
        // An overlay over a raw base.
        var pattern = new byte[8 << 20];
        new Random(5).NextBytes(pattern);
        File.WriteAllBytes(Path.Combine(Dir, "base.raw"), pattern);
        Ok("qemu-img", Dir, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "ov.qed", "8M");
        Ok("qemu-io", Dir, "-f", "qed", "-c", "write -P 0x31 4k 4k", "-c", "write -P 0x32 2M 64k", "-c", "write -z 4M 64k", "ov.qed");
        Probes["ov.qed"] = [0, 65536, 2L << 20, 4L << 20, 6L << 20];
        // 4 KiB clusters and a 32 MiB file: QEMU's cluster-count bug reports leaks that do not exist.
        Ok("qemu-img", Dir, "create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=4", "big.qed", "64M");
        Ok("qemu-io", Dir, "-f", "qed", "-c", "write -P 0x41 0 32M", "big.qed");
        Probes["big.qed"] = [0, 16L << 20, 40L << 20];
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}

/// <summary>
/// <c>qed check</c> against <c>qemu-img check</c> on hand-corrupted qemu-made images (the verified cases of the
/// reference, section 5, and more): same JSON, text and exit status, except where QEMU has a named bug; after
/// <c>qed check -r all</c>, qemu-img finds no corruption on repairable images, and every cluster qed could read
/// before reads the same through qemu after.
/// </summary>
public class CheckInteropTests(CheckImages images) : IClassFixture<CheckImages>
{
    /// <summary>A corruption: the base image, what to poke, whether -r all can repair it, and the QEMU bug that makes qemu differ.</summary>
    private sealed record Case(string Base, Action<byte[]> Corrupt, bool Repairable = true, string? QemuBug = null);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        ["clean"] = new("c.qed", _ => { }),
        ["L2 entry past EOF"] = new("c.qed", b => Poke(b, L2(b, 0, 1), 0x1000000)),
        ["L2 entry unaligned"] = new("c.qed", b => Poke(b, L2(b, 0, 1), Entry(b, 0, 0) + 0x200)),
        ["L2 entry with the low bit set"] = new("c.qed", b => Poke(b, L2(b, 0, 1), Entry(b, 0, 0) + 1)),
        ["L2 entry huge"] = new("c.qed", b => Poke(b, L2(b, 0, 1), 0xffff_ffff_ffff_0000)),
        ["L2 entry duplicated"] = new("c.qed", b => Poke(b, L2(b, 0, 1), Entry(b, 0, 0))),
        ["L2 entry into L1"] = new("c.qed", b => Poke(b, L2(b, 0, 1), (ulong)L1(b))),
        ["L2 entry into its own table"] = new("c.qed", b => Poke(b, L2(b, 0, 1), L1Value(b, 0) + 0x10000)),
        ["L1 entry past EOF"] = new("c.qed", b => Poke(b, L1(b) + 8, 0x7777000)),
        ["L1 entry is 1"] = new("c.qed", b => Poke(b, L1(b), 1)),
        ["L2 table overlapping L1"] = new("c.qed", b => Poke(b, L1(b) + 8, (ulong)L1(b))),
        // The L1 entry that maps the data names the L1 table: the real L2 table and its data clusters are leaked, and
        // only a person can tell where they belong, so the repair unlinks the entry and keeps them.
        ["L1 entry 0 into the L1 table"] = new("c.qed", b => Poke(b, L1(b), (ulong)L1(b))),
        ["L1 entry 0 into the L1 table's second cluster"] = new("c.qed", b => Poke(b, L1(b), (ulong)L1(b) + 0x10000)),
        ["two L1 entries share a table"] = new("c.qed", b => Poke(b, L1(b) + 8, L1Value(b, 0))),
        ["L2 table over a data cluster"] = new("c.qed", b => Poke(b, L1(b) + 16, Entry(b, 0, 0))),
        ["two corruptions and a leak"] = new("c.qed", b => { Poke(b, L2(b, 0, 16368), 0x5000000); Poke(b, L2(b, 0, 1), Entry(b, 0, 0) + 0x800); }),
        ["junk cluster appended"] = new("c.qed", b => { }),
        ["NEED_CHECK set"] = new("c.qed", b => b[16] |= 2),
        ["truncated in the last data cluster"] = new("c.qed", b => { }),
        ["small: L2 entry past EOF in the third table"] = new("s.qed", b => Poke(b, L2(b, 10, 1), 0x4000000)),
        ["small: duplicate across tables"] = new("s.qed", b => Poke(b, L2(b, 1, 256), Entry(b, 0, 0))),
        ["small: L1 entry unaligned"] = new("s.qed", b => Poke(b, L1(b) + 8 * 10, L1Value(b, 10) + 0x800)),
        ["small: tables overlapping by a cluster"] = new("s.qed", b => Poke(b, L1(b) + 8 * 10, L1Value(b, 1) + 0x1000)),
        ["small: two L1 entries share a table"] = new("s.qed", b => Poke(b, L1(b) + 8 * 10, L1Value(b, 1))),
        ["small: a table shared, its own lost"] = new("s.qed", b => Poke(b, L1(b) + 8 * 1, L1Value(b, 0))),
        ["overlay: L1 entry 0 into the L1 table"] = new("ov.qed", b => Poke(b, L1(b), (ulong)L1(b))),
        ["overlay: L2 entry past EOF"] = new("ov.qed", b => Poke(b, L2(b, 0, 1), 0x9000000)),
        ["overlay: duplicate"] = new("ov.qed", b => Poke(b, L2(b, 0, 32), Entry(b, 0, 0))),
        ["overlay: zero cluster made unaligned"] = new("ov.qed", b => Poke(b, L2(b, 0, 64), 0x10001)),
        ["large file with 4k clusters"] = new("big.qed", _ => { }, QemuBug: "QEMU 7.2 bug 2a: qed_bytes_to_clusters divides by cluster_size-1, so qemu-img reports floor(file clusters/4095) leaks that do not exist"),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);
    public static TheoryData<string> RepairableNames => new(Cases.Where(c => c.Value.Repairable).Select(c => c.Key));

    private string Make(string name)
    {
        var c = Cases[name];
        var bytes = File.ReadAllBytes(Path.Combine(images.Dir, c.Base));
        c.Corrupt(bytes);
        if (name == "junk cluster appended") bytes = [.. bytes, .. Enumerable.Repeat((byte)0x5a, 65536 * 2 + 100)];
        if (name == "truncated in the last data cluster") bytes = bytes[..^30000];
        string file = $"case-{Regex.Replace(name, "[^a-zA-Z0-9]+", "-")}-{Guid.NewGuid():N}.qed";
        File.WriteAllBytes(Path.Combine(images.Dir, file), bytes);
        return file;
    }

    [Fact]
    public void ThereAreAtLeastTwentyCorruptedImages() => Assert.True(Cases.Count(c => c.Key != "clean") >= 20);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void JsonTextAndExitStatusMatchQemuImg(string name)
    {
        string file = Make(name);
        string hash = Hash(file);
        var qemu = Run("qemu-img", images.Dir, "check", "--output=json", file);
        var ours = RunQed(images.Dir, "check", "--output=json", file);
        var bug = Cases[name].QemuBug;
        if (bug is null)
        {
            Assert.True(qemu.Stdout == ours.Stdout, $"{name}\nqemu-img:\n{qemu.Stdout}{qemu.Stderr}\nqed:\n{ours.Stdout}{ours.Stderr}");
            Assert.Equal(qemu.ExitCode, ours.ExitCode);
            var qemuText = Run("qemu-img", images.Dir, "check", file);
            var oursText = RunQed(images.Dir, "check", file);
            Assert.Equal(qemuText.Stdout, oursText.Stdout);
            Assert.Equal(qemuText.ExitCode, oursText.ExitCode);
        }
        else
        {
            // Everything but the leak count agrees; qemu's leaks are its bug, and ours is the true count: every
            // regular cluster is the L1 table, an L2 table or an allocated data cluster.
            long qemuLeaks = Field(qemu.Stdout, "leaks"), ourLeaks = Field(ours.Stdout, "leaks");
            var bytes = File.ReadAllBytes(Path.Combine(images.Dir, file));
            uint cs = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)), ts = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
            long fileClusters = bytes.Length / cs;
            long tables = Enumerable.Range(0, (int)(cs * ts / 8)).Count(i => L1Value(bytes, i) != 0);
            Assert.Equal(fileClusters - 1, ts + tables * ts + Field(ours.Stdout, "allocated-clusters"));
            Assert.True(ourLeaks == 0, bug);
            Assert.True(qemuLeaks == fileClusters / (cs - 1) && qemuLeaks > 0, $"{bug}: qemu-img reported {qemuLeaks}");
            Assert.Equal(Regex.Replace(qemu.Stdout, "\\s*\"leaks\": \\d+,", ""), ours.Stdout);
            Assert.Equal(3, qemu.ExitCode);
            Assert.Equal(0, ours.ExitCode);
        }
        Assert.Equal(hash, Hash(file)); // a check without -r changes nothing
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task RepairAllLeavesNoCorruptionForQemuAndLosesNoReadableData(string name)
    {
        string file = Make(name);
        string path = Path.Combine(images.Dir, file);
        var probes = images.Probes[Cases[name].Base];

        // What qed can read before the repair, cluster by cluster.
        var before = new Dictionary<long, byte[]>();
        await using (var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true, Format = ImageFormat.Qed }))
        {
            foreach (long at in probes)
            {
                var data = new byte[image.ClusterSize];
                try
                {
                    await image.ReadAsync(at, data);
                    before[at] = data;
                }
                catch (ImageFormatException)
                {
                    // Not readable before: the repair may give it any content that reads.
                }
            }
        }

        long keep = HeldEnd(File.ReadAllBytes(Path.Combine(images.Dir, Cases[name].Base)), File.ReadAllBytes(path));
        var repair = RunQed(images.Dir, "check", "-r", "all", file);
        var after = Run("qemu-img", images.Dir, "check", "--output=json", file);
        if (!Cases[name].Repairable)
        {
            Assert.Equal(2, repair.ExitCode);
            Assert.Contains("Not repaired", repair.Stderr);
            Assert.Equal(2, after.ExitCode);
            return;
        }
        Assert.True(repair.ExitCode is 0 or 3, $"{name}: {repair.Stdout}{repair.Stderr}");
        // Nothing that held data or a table before (in the image as qemu made it, or as corrupted) is cut off.
        long length = new FileInfo(path).Length;
        Assert.True(length >= keep, $"{name}: the repair cut the file to {length} bytes, below {keep} that held data or tables");
        Assert.True(after.ExitCode is 0 or 3 && Field(after.Stdout, "corruptions") == 0, $"{name}: qemu-img after repair: {after.Stdout}");
        if (Cases[name].QemuBug is null)
        {
            // Leaks at the end were reclaimed; any left (before the last used cluster) are counted alike by both.
            var ours = RunQed(images.Dir, "check", "--output=json", file);
            Assert.Equal(after.Stdout, ours.Stdout);
            Assert.Equal(after.ExitCode, ours.ExitCode);
        }

        // qemu reads everything now; every cluster that read before reads the same.
        Ok("qemu-img", images.Dir, "convert", "-f", "qed", "-O", "raw", file, file + ".raw");
        await using var raw = File.OpenRead(path + ".raw");
        foreach (var (at, data) in before)
        {
            var now = new byte[data.Length];
            raw.Position = at;
            raw.ReadExactly(now);
            Assert.True(data.AsSpan().SequenceEqual(now), $"{name}: guest offset {at} changed by the repair");
        }
    }

    [Theory]
    [InlineData("L2 entry past EOF")]
    [InlineData("L1 entry past EOF")]
    [InlineData("L2 entry unaligned")]
    public void RepairTextMatchesQemuWhereBothRepairAlike(string name)
    {
        string ours = Make(name), theirs = Make(name);
        var q = Run("qemu-img", images.Dir, "check", "-r", "all", theirs);
        var o = RunQed(images.Dir, "check", "-r", "all", ours);
        Assert.Equal(q.Stdout, o.Stdout);
        Assert.Equal(q.ExitCode, o.ExitCode);
        Assert.Contains("The following inconsistencies were found and repaired", o.Stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(images.Dir, theirs)), File.ReadAllBytes(Path.Combine(images.Dir, ours)));
    }

    /// <summary>
    /// Issue 12 item 5: an L1 entry overwritten with the L1 table's own offset. Repair used to unlink nothing and cut the
    /// real L2 table and its data off the file (786,432 to 327,680 bytes) with the corruption still there. Now the
    /// entry is unlinked, nothing is cut, qemu-img finds no corruption, and putting the entry back recovers every byte.
    /// </summary>
    [Fact]
    public void AnL1EntryIntoTheL1TableIsUnlinkedAndWhatItLostIsKeptRecoverable()
    {
        string file = Make("L1 entry 0 into the L1 table");
        string path = Path.Combine(images.Dir, file);
        var original = File.ReadAllBytes(Path.Combine(images.Dir, "c.qed"));
        long length = new FileInfo(path).Length;

        var repair = RunQed(images.Dir, "check", "-r", "all", file);
        Assert.True(repair.ExitCode == 3, $"{repair.Stdout}{repair.Stderr}"); // repaired; the orphaned clusters are kept, as leaks
        Assert.Contains("kept", repair.Stderr);
        Assert.Equal(length, new FileInfo(path).Length);
        var after = Run("qemu-img", images.Dir, "check", "--output=json", file);
        Assert.True(after.ExitCode == 3 && Field(after.Stdout, "corruptions") == 0 && Field(after.Stdout, "leaks") == 7, after.Stdout);

        // A person who knows where the table was can put it back: nothing was lost.
        var bytes = File.ReadAllBytes(path);
        Poke(bytes, L1(bytes), L1Value(original, 0));
        File.WriteAllBytes(path, bytes);
        Ok("qemu-img", images.Dir, "compare", "-f", "qed", "-F", "qed", "c.qed", file);
        Assert.Equal(0, Run("qemu-img", images.Dir, "check", file).ExitCode);
    }

    [Fact]
    public void RepairLeaksReclaimsTheTrailingLeakAndSaysSo()
    {
        string json = Make("junk cluster appended"), text = Make("junk cluster appended");
        long clean = new FileInfo(Path.Combine(images.Dir, "c.qed")).Length;
        var before = Run("qemu-img", images.Dir, "check", "--output=json", json);
        Assert.Equal(2, Field(before.Stdout, "leaks"));

        var o = RunQed(images.Dir, "check", "-r", "leaks", "--output=json", json);
        Assert.Equal(0, o.ExitCode);
        Assert.Equal(2, Field(o.Stdout, "leaks-fixed"));
        Assert.Equal(0, Field(o.Stdout, "leaks"));
        Assert.Contains("reclaimed 2 leaked cluster(s)", o.Stderr);
        Assert.Equal(clean, new FileInfo(Path.Combine(images.Dir, json)).Length);
        var after = Run("qemu-img", images.Dir, "check", "--output=json", json);
        Assert.Equal(0, after.ExitCode);
        Assert.Equal(0, Field(after.Stdout, "leaks"));

        var h = RunQed(images.Dir, "check", "-r", "leaks", text);
        Assert.StartsWith("The following inconsistencies were found and repaired:\n\n    2 leaked clusters\n    0 corruptions\n\nDouble checking the fixed image now...\nNo errors were found on the image.\n", h.Stdout);
    }

    [Fact]
    public void RawImagesHaveNoCheckAsInQemuImg()
    {
        var q = Run("qemu-img", images.Dir, "check", "base.raw");
        var o = RunQed(images.Dir, "check", "base.raw");
        Assert.Equal(63, q.ExitCode);
        Assert.Equal(q.ExitCode, o.ExitCode);
        Assert.Contains("This image format does not support checks", o.Stderr);
        Assert.Equal("", o.Stdout);
    }

    [Fact]
    public async Task AnImageLeftDirtyByQemuIoOpensReadOnlyUnchangedAndReadWriteRepaired()
    {
        string file = $"dirty-{Guid.NewGuid():N}.qed";
        string path = Path.Combine(images.Dir, file);
        Ok("qemu-img", images.Dir, "create", "-q", "-f", "qed", file, "1G");
        var aborted = Run("qemu-io", images.Dir, "-f", "qed", "-c", "write -P 1 0 64k", "-c", "abort", file);
        Assert.NotEqual(0, aborted.ExitCode);
        Assert.Equal(2, File.ReadAllBytes(path)[16] & 2); // NEED_CHECK left set

        string hash = Hash(file);
        var expected = Enumerable.Repeat((byte)1, 65536).ToArray();
        await using (var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.True(((QedImage)image).IsDirty);
            var data = new byte[65536];
            await image.ReadAsync(0, data);
            Assert.Equal(expected, data);
        }
        Assert.Equal(hash, Hash(file));

        await using (var image = await DiskImage.OpenAsync(path))
        {
            Assert.False(((QedImage)image).IsDirty);
            var data = new byte[65536];
            await image.ReadAsync(0, data);
            Assert.Equal(expected, data);
        }
        Assert.Equal(0, File.ReadAllBytes(path)[16] & 2);
        var check = Run("qemu-img", images.Dir, "check", file);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
    }

    /// <summary>
    /// The end of the last whole cluster that held data or a table: in the image as qemu made it (it has no leaks, so
    /// every cluster), or named by an entry of the corrupted image that lies inside its file.
    /// </summary>
    private static long HeldEnd(byte[] original, byte[] corrupted)
    {
        uint cs = BinaryPrimitives.ReadUInt32LittleEndian(corrupted.AsSpan(4)), ts = BinaryPrimitives.ReadUInt32LittleEndian(corrupted.AsSpan(8));
        long fileEnd = corrupted.Length / cs * cs;
        long end = Math.Min(original.Length / cs * cs, fileEnd);
        bool Inside(ulong offset, long length) => offset % cs == 0 && offset >= cs && offset + (ulong)length <= (ulong)fileEnd;
        int entries = (int)(cs * ts / 8);
        for (int i = 0; i < entries; i++)
        {
            ulong table = L1Value(corrupted, i);
            if (!Inside(table, cs * ts)) continue;
            end = Math.Max(end, (long)table + cs * ts);
            for (int j = 0; j < entries; j++)
            {
                ulong entry = U64(corrupted, (long)table + 8L * j);
                if (entry > 1 && Inside(entry, cs)) end = Math.Max(end, (long)entry + cs);
            }
        }
        return end;
    }

    private string Hash(string file) => System.Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(images.Dir, file))));

    private static long Field(string json, string key)
    {
        var m = Regex.Match(json, $"\"{Regex.Escape(key)}\": (\\d+)");
        return m.Success ? long.Parse(m.Groups[1].Value) : 0;
    }

    private static ulong U64(byte[] b, long at) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan((int)at));
    private static void Poke(byte[] b, long at, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan((int)at), value);
    private static long L1(byte[] b) => (long)U64(b, 40);
    private static ulong L1Value(byte[] b, int i) => U64(b, L1(b) + 8L * i);
    private static long L2(byte[] b, int i, int j) => (long)L1Value(b, i) + 8L * j;
    private static ulong Entry(byte[] b, int i, int j) => U64(b, L2(b, i, j));
}
