using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Convert;

/// <summary>
/// convert (with and without <c>--salvage</c>) over blkdebug json: names whose rules fail block-status queries and
/// reads of chosen sectors (<c>event: none</c>, <c>iotype</c>, <c>sector</c>, as QEMU's iotest 251 writes them), run by
/// qemu-img and by qed on copies of one source: the same warning and error lines (the program name aside), in the same
/// order, the same exit code, and on success targets that qemu-img compare finds identical.
/// </summary>
public partial class ConvertSalvageInteropTests
{
    private const long M = 1 << 20;

    /// <summary>Rules as "bs:OFFSET" (block-status) or "read:OFFSET", or "any:OFFSET" (event none, no iotype).</summary>
    public static TheoryData<string, bool, string> Cases => new()
    {
        // iotest 251's layout, scaled to 16 MiB: two failed queries (one shared with a read), a read, 8 sectors in a row.
        { "full", true, $"bs:{4 * M + 8192} bs:{8 * M + 512} read:{8 * M - 65536} read:{8 * M + 512} " + string.Join(' ', Enumerable.Range(0, 8).Select(i => $"read:{9 * M + i * 512}")) },
        { "full", true, "bs:0" },
        { "full", true, $"bs:{3 * M} bs:{3 * M + 512} bs:{3 * M + 4096}" },
        { "full", true, $"bs:{16 * M - 512} read:{16 * M - 512}" },
        { "full", false, $"bs:{5 * M + 512}" },
        { "full", false, $"read:{3 * M}" },
        { "full", false, $"read:{M + 512}" },
        { "full", true, $"any:{2 * M}" },
        { "full", false, $"any:{2 * M}" },
        { "sparse", true, $"read:{10 * M + 4096} bs:{12 * M + 512} bs:{5 * M}" },
        { "sparse", false, $"read:{10 * M + 4096}" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SameWarningsExitCodeAndContentAsQemuImg(string source, bool salvage, string rules)
    {
        using var ours = Setup(source);
        using var theirs = Setup(source);
        string[] Args(TempDir dir) => ["convert", .. salvage ? new[] { "--salvage" } : [], "-O", "qed", Spec(dir["s.qed"], rules), "out"];
        var t = theirs.QemuImg(Args(theirs));
        var q = ours.Qed(Args(ours));
        Assert.True(t.ExitCode == q.ExitCode, $"{t}\n{q}");
        Assert.Equal(ProgramName().Replace(t.StdErr, ""), ProgramName().Replace(q.StdErr, ""));
        Assert.NotEqual("", q.StdErr); // every case here fails something
        if (t.ExitCode == 0) Tool.Ok(theirs.QemuImg("compare", "-f", "qed", "-F", "qed", "out", ours["out"]));
    }

    [Fact]
    public void SalvagedTargetHoldsZeroesExactlyWhereReadsFailed()
    {
        // iotest 251's own check: zero the failed sectors in the source, then source and target compare identical.
        using var dir = Setup("full");
        long[] bad = [8 * M - 65536, 8 * M + 512];
        string rules = $"bs:{4 * M + 8192} bs:{8 * M + 512} " + string.Join(' ', bad.Select(b => $"read:{b}"));
        var q = dir.Qed("convert", "--salvage", Spec(dir["s.qed"], rules), "out.raw");
        Assert.Equal(0, q.ExitCode);
        Assert.NotEqual(0, dir.QemuImg("compare", "-f", "qed", "-F", "raw", "s.qed", "out.raw").ExitCode);
        foreach (long b in bad) Tool.Ok(dir.QemuIo("-c", $"write -z {b} 512", "s.qed"));
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "s.qed", "out.raw"));
    }

    [Fact]
    public void AnUnknownIoTypeIsRefusedInQemusWords()
    {
        using var dir = Setup("full");
        string spec = $"json:{{'driver':'blkdebug','image':{{'driver':'qed','file':{{'driver':'file','filename':'{dir["s.qed"]}'}}}},'inject-error':[{{'event':'none','iotype':'bogus'}}]}}";
        var t = dir.QemuImg("convert", spec, "out");
        var q = dir.Qed("convert", spec, "out");
        Assert.Equal(1, q.ExitCode);
        Assert.Equal(t.ExitCode, q.ExitCode);
        Assert.Equal(ProgramName().Replace(t.StdErr, ""), ProgramName().Replace(q.StdErr, ""));
    }

    /// <summary>A blkdebug json: name over the qed image at <paramref name="path"/>, laid out as iotest 251 writes it.</summary>
    private static string Spec(string path, string rules)
    {
        var parts = rules.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(r =>
        {
            string[] kv = r.Split(':');
            string type = kv[0] switch { "bs" => ", 'iotype': 'block-status'", "read" => ", 'iotype': 'read'", _ => "" };
            return $"{{ 'event': 'none'{type}, 'errno': 5, 'sector': {long.Parse(kv[1], System.Globalization.CultureInfo.InvariantCulture) / 512} }}";
        });
        return $"json:{{'driver': 'blkdebug', 'image': {{'driver': 'qed', 'file': {{'driver': 'file', 'filename': '{path}'}}}}, 'inject-error': [{string.Join(",", parts)}]}}";
    }

    /// <summary>
    /// "full": 16 MiB all written (pattern 42), as iotest 251's source; "sparse": data, a hole, a zero cluster run and
    /// more holes, so that the queries answer several runs.
    /// </summary>
    private static TempDir Setup(string kind)
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "s.qed", "16M"));
        string[] writes = kind == "full"
            ? ["-c", "write -P 42 0 16M"]
            : ["-c", "write -P 1 0 1M", "-c", "write -P 2 10M 1M", "-c", "write -z 12M 1M", "-c", "write -P 3 15M 64k"];
        Tool.Ok(dir.QemuIo([.. writes, "s.qed"]));
        return dir;
    }

    [GeneratedRegex("^(qemu-img|qed): ", RegexOptions.Multiline)]
    private static partial Regex ProgramName();
}
