using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.BadHeader;

/// <summary>
/// Every malformed header gives one line on stderr and a failing exit from every command (1; compare uses 2, its
/// error code, as qemu-img compare does), with no stack trace, and leaves the file byte for byte as it was.
/// QEMU must refuse each mutation too, so each case is a real error and not our opinion.
/// </summary>
public class BadHeaderTests
{
    /// <summary>A mutation of a good image and the phrase our message must contain (qemu-img's where it has one).</summary>
    public sealed record Case(string Name, Action<string> Mutate, string Phrase)
    {
        public override string ToString() => Name;
    }

    private static Action<string> U32(int offset, uint value) => path => HeaderEditor.SetU32(path, offset, value);
    private static Action<string> U64(int offset, ulong value) => path => HeaderEditor.SetU64(path, offset, value);
    private static Action<string> Truncate(long length) => path => { using var f = new FileStream(path, FileMode.Open); f.SetLength(length); };

    public static TheoryData<Case> Cases => new(
        new Case("bad-magic", U32(0, 0x00444552), "Image not in QED format"),
        new Case("cluster-size-2048", U32(4, 2048), "QED cluster size is invalid"),
        new Case("cluster-size-not-power-of-2", U32(4, 3000), "QED cluster size is invalid"),
        new Case("cluster-size-128M", U32(4, 128 << 20), "QED cluster size is invalid"),
        new Case("table-size-0", U32(8, 0), "QED table size is invalid"),
        new Case("table-size-3", U32(8, 3), "QED table size is invalid"),
        new Case("table-size-32", U32(8, 32), "QED table size is invalid"),
        // QEMU opens a 0-cluster header; qed refuses it (docs/cli-tour.md). A header too large for the file is, in
        // qemu's words, an L1 table inside the header.
        new Case("header-size-0", U32(12, 0), "QED header size is invalid"),
        new Case("header-size-huge", U32(12, 0x100000), "QED table offset is invalid"),
        new Case("header-size-max", U32(12, uint.MaxValue), "QED table offset is invalid"),
        new Case("unknown-feature-0x100", U64(16, 0x100 | 5), "Unsupported QED features: 100"),
        new Case("unknown-feature-0x8", U64(16, 0x8 | 5), "Unsupported QED features: 8"),
        new Case("l1-offset-unaligned", U64(40, 0x10200), "QED table offset is invalid"),
        new Case("l1-offset-in-header", U64(40, 0), "QED table offset is invalid"),
        new Case("l1-table-past-eof", U64(40, 0x10000000), "QED table offset is invalid"),
        new Case("image-size-not-512-multiple", U64(48, 1000), "QED image size is invalid"),
        new Case("image-size-too-large", U64(48, 1UL << 62), "QED image size is invalid"),
        new Case("backing-name-out-of-bounds", U32(56, 65530), "QED backing filename offset is invalid"),
        new Case("backing-name-too-long", path => { HeaderEditor.SetU32(path, 12, 2); HeaderEditor.SetU64(path, 40, 0x20000); HeaderEditor.SetU32(path, 60, 5000); },
            "Failed to read backing filename"),
        new Case("truncated-inside-l1", Truncate(100000), "QED table offset is invalid"),
        new Case("truncated-to-32-bytes", Truncate(32), "Image not in QED format"));

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryCommandFailsWithOneLineAndLeavesTheFileAlone(Case bad)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "4M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "bad.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 128k", "-c", "write -z 1M 64k", "bad.qed"));
        bad.Mutate(dir["bad.qed"]);
        Assert.NotEqual(0, dir.QemuImg("info", "-f", "qed", "bad.qed").ExitCode);
        string before = dir.Hash("bad.qed");

        // Every command once; the variants (probing, other outputs, read-only io, reversed compare) for a few
        // representative cases only, to keep the suite fast.
        var runs = new List<(string[] Args, int Exit)>
        {
            (["info", "-f", "qed", "bad.qed"], 1),
            (["map", "-f", "qed", "--output=json", "bad.qed"], 1),
            (["convert", "-f", "qed", "-O", "qed", "bad.qed", "out1.qed"], 1),
            (["compare", "-f", "qed", "-F", "raw", "bad.qed", "base.raw"], 2),
            (["io", "-f", "qed", "-c", "read 0 512", "bad.qed"], 1),
            (["io", "-f", "qed", "-c", "write -P 7 0 512", "-c", "flush", "bad.qed"], 1),
        };
        if (bad.Name is "unknown-feature-0x100" or "l1-table-past-eof" or "truncated-inside-l1" or "backing-name-out-of-bounds")
        {
            runs.Add((["info", "-f", "qed", "--output=json", "--backing-chain", "bad.qed"], 1));
            runs.Add((["convert", "-f", "qed", "-O", "raw", "bad.qed", "out.raw"], 1));
            runs.Add((["compare", "-f", "raw", "-F", "qed", "base.raw", "bad.qed"], 2));
            runs.Add((["io", "-f", "qed", "-r", "-c", "read 0 512", "bad.qed"], 1));
            // Without -f the format is probed from the magic, which is intact here.
            runs.Add((["info", "bad.qed"], 1));
            runs.Add((["map", "bad.qed"], 1));
            runs.Add((["io", "-c", "write 0 4k", "bad.qed"], 1));
            runs.Add((["convert", "-O", "qed", "bad.qed", "out2.qed"], 1));
        }

        // The commands only read the bad file (or fail before writing), so the readers run side by side to save time;
        // the writable opens run alone afterwards, since beside a reader they would be refused by its lock.
        static bool Writes(string[] args) => args[0] == "io" && !args.Contains("-r");
        var results = runs.Where(r => !Writes(r.Args)).AsParallel().AsOrdered().WithDegreeOfParallelism(2).Select(r => (r.Exit, Result: dir.Qed(r.Args))).ToList();
        results.AddRange(runs.Where(r => Writes(r.Args)).Select(r => (r.Exit, Result: dir.Qed(r.Args))));
        foreach (var (exit, result) in results)
        {
            string what = $"{bad.Name}: {result}";
            Assert.True(result.ExitCode == exit, what);
            string[] lines = result.StdErr.TrimEnd('\n').Split('\n');
            Assert.True(lines.Length == 1, $"expected one line on stderr\n{what}");
            // qed io words it as qemu-io does ("qemu-io: can't open device FILE: REASON", as in iotest 116's expected
            // output), the rest as qemu-img ("qed: Could not open 'FILE': REASON").
            string prefix = result.Command.StartsWith("qed io ", StringComparison.Ordinal) ? "qemu-io: can't open device bad.qed: " : "qed: Could not open 'bad.qed': ";
            Assert.StartsWith(prefix, lines[0]);
            Assert.DoesNotContain("Could not open 'bad.qed'", lines[0][prefix.Length..]);
            Assert.Contains(bad.Phrase, lines[0]);
            Assert.Equal("", result.StdOut);
            Assert.False(new[] { "out.raw", "out1.qed", "out2.qed" }.Any(n => File.Exists(dir[n])), $"a target was created\n{what}");
            Assert.Equal(before, dir.Hash("bad.qed"));
        }

        // --debug adds the stack trace, for developers.
        var debug = dir.Qed("info", "--debug", "-f", "qed", "bad.qed");
        Assert.Equal(1, debug.ExitCode);
        Assert.Contains("   at ", debug.StdErr);
        Assert.Equal(before, dir.Hash("bad.qed"));
    }
}
