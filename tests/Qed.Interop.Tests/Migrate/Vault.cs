using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Migrate;

/// <summary>
/// A vault of legacy images made with qemu-img and qemu-io in <c>vault/</c> of a scratch folder: standalone images,
/// three-layer chains with relative backing names in subfolders, a dirty image (its qemu-io writer killed with SIGKILL),
/// 4 KiB clusters with 16-cluster tables, a QED overlay over raw (NO_PROBE) and over qcow2, and optionally a corrupt
/// image (an L2 entry pointing past the end of the file).
/// </summary>
public sealed class Vault : IDisposable
{
    public const long M = 1 << 20;

    public Vault(bool corrupt = true, int chains = 2, int dataMiB = 2)
    {
        Dir = new TempDir();
        Directory.CreateDirectory(Dir["vault"]);
        Make(corrupt, chains, dataMiB);
        SourceHashes = HashAll(Dir["vault"]);
    }

    public TempDir Dir { get; }

    /// <summary>The vault's folder.</summary>
    public string Root => Dir["vault"];

    /// <summary>SHA-256 of every file in the vault, taken after it was made.</summary>
    public IReadOnlyDictionary<string, string> SourceHashes { get; }

    /// <summary>QED sources (relative to the vault) and what each target must be: its backing name and format, if any.</summary>
    public List<(string Source, string? Backing, string? BackingFormat)> Images { get; } = [];

    /// <summary>The corrupt image's name, or null.</summary>
    public string? CorruptImage { get; private set; }

    /// <summary>Backing files of other formats the migration must bring along, relative to the vault.</summary>
    public List<string> Others { get; } = [];

    private ToolResult Img(params string[] args) => Tool.Ok(Tool.QemuImg(Root, args));

    private ToolResult Io(params string[] args) => Tool.Ok(Tool.QemuIo(Root, args));

    private void Make(bool corrupt, int chains, int dataMiB)
    {
        string data = $"{dataMiB}M";
        Img("create", "-q", "-f", "qed", "standalone.qed", "64M");
        Io("-c", $"write -P 0x11 0 {data}", "-c", "write -z 32M 1M", "standalone.qed");
        Images.Add(("standalone.qed", null, null));

        for (int c = 0; c < chains; c++)
        {
            string folder = $"chains/c{c}";
            Directory.CreateDirectory(Path.Combine(Root, folder, "sub"));
            Img("create", "-q", "-f", "qed", $"{folder}/base.qed", "32M");
            Io("-c", $"write -P 0x{0x20 + c:x2} 0 {data}", $"{folder}/base.qed");
            // Relative names as qemu-img records them: relative to the overlay's own folder.
            Img("create", "-q", "-f", "qed", "-b", "../base.qed", "-F", "qed", $"{folder}/sub/mid.qed");
            Io("-c", $"write -P 0x{0x40 + c:x2} 1M 1M", "-c", "write -z 0 64k", $"{folder}/sub/mid.qed");
            Img("create", "-q", "-f", "qed", "-b", "mid.qed", "-F", "qed", $"{folder}/sub/top.qed");
            Io("-c", $"write -P 0x{0x60 + c:x2} 1536k 64k", $"{folder}/sub/top.qed");
            Images.Add(($"{folder}/base.qed", null, null));
            Images.Add(($"{folder}/sub/mid.qed", "../base.qcow2", "qcow2"));
            Images.Add(($"{folder}/sub/top.qed", "mid.qcow2", "qcow2"));
        }

        // A writer killed mid-run: NEED_CHECK stays set (the migration must read it as it is, never repair it).
        Img("create", "-q", "-f", "qed", "dirty.qed", "16M");
        var killed = Tool.QemuIo(Root, "-c", "write -P 0xaa 0 64k", "-c", "write -P 0xab 4M 128k", "-c", "sigraise 9", "dirty.qed");
        Assert.True(killed.ExitCode != 0, killed.ToString());
        Assert.True((File.ReadAllBytes(Path.Combine(Root, "dirty.qed"))[16] & 0x02) != 0, "qemu-io left dirty.qed clean");
        Images.Add(("dirty.qed", null, null));

        Img("create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=16", "small.qed", "8M");
        Io("-c", "write -P 0x99 4k 100k", "small.qed");
        Images.Add(("small.qed", null, null));

        Img("create", "-q", "-f", "raw", "rawbase.img", "16M");
        Io("-f", "raw", "-c", "write -P 0x55 0 1M", "rawbase.img");
        Img("create", "-q", "-f", "qed", "-b", "rawbase.img", "-F", "raw", "overraw.qed");
        Io("-c", "write -P 0x66 512k 64k", "overraw.qed");
        Images.Add(("overraw.qed", "rawbase.img", "raw"));
        Others.Add("rawbase.img");

        Img("create", "-q", "-f", "qcow2", "q2base.qcow2", "16M");
        Io("-c", "write -P 0x77 0 1M", "q2base.qcow2");
        Img("create", "-q", "-f", "qed", "-b", "q2base.qcow2", "-F", "qcow2", "overq2.qed");
        Io("-c", "write -P 0x88 0 4k", "overq2.qed");
        Images.Add(("overq2.qed", "q2base.qcow2", "qcow2"));
        Others.Add("q2base.qcow2");

        if (corrupt)
        {
            Img("create", "-q", "-f", "qed", "bad.qed", "16M");
            Io("-c", "write -P 0xbb 0 128k", "-c", "write -P 0xcc 1M 64k", "bad.qed");
            // L2 entry 1 (guest 64k..128k) pointed past the end of the file: qemu-img check counts a corruption.
            string path = Path.Combine(Root, "bad.qed");
            byte[] head = File.ReadAllBytes(path);
            long l1 = (long)BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(40));
            long l2 = (long)BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan((int)l1));
            using (var file = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                file.Position = l2 + 8;
                var entry = new byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(entry, 0x7fff0000);
                file.Write(entry);
            }
            Assert.Equal(2, Tool.QemuImg(Root, "check", "bad.qed").ExitCode);
            CorruptImage = "bad.qed";
        }
    }

    public static Dictionary<string, string> HashAll(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(
            f => Path.GetRelativePath(folder, f), f => System.Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    /// <summary>Asserts the vault is byte for byte as made.</summary>
    public void AssertSourcesUnchanged() => Assert.Equal(SourceHashes, HashAll(Root));

    /// <summary>The target of a source for a format: the same relative path, the extension replaced.</summary>
    public static string TargetOf(string source, string format) => Path.ChangeExtension(source, "." + format);

    /// <summary>
    /// Asserts the target tree in <paramref name="target"/> holds a verified copy of every image but the corrupt one
    /// (unless <paramref name="withCorrupt"/>): qemu-img check clean, qemu-img compare identical with the source, the
    /// chain kept as qemu-img info --backing-chain shows it (names and formats) unless flat.
    /// </summary>
    public void AssertTargetTree(string target, string format, bool flat, bool withCorrupt = false)
    {
        var expected = Images.ToList();
        if (withCorrupt && CorruptImage != null) expected.Add((CorruptImage, null, null));
        foreach (var (source, backing, backingFormat) in expected)
        {
            string t = Path.Combine(target, TargetOf(source, format));
            Assert.True(File.Exists(t), $"missing target {t}");
            if (format == "qcow2") Tool.Ok(Tool.QemuImg(Root, "check", "-f", "qcow2", t));
            if (source != CorruptImage) Tool.Ok(Tool.QemuImg(Root, "compare", "-f", "qed", "-F", format, source, t));
            var info = Tool.Ok(Tool.QemuImg(Root, "info", "--backing-chain", "--output=json", "-f", format, t));
            using var chain = JsonDocument.Parse(info.StdOut);
            var top = chain.RootElement[0];
            if (flat || backing is null)
            {
                Assert.False(top.TryGetProperty("backing-filename", out _), $"{t} should be standalone:\n{info.StdOut}");
                Assert.Equal(1, chain.RootElement.GetArrayLength());
                continue;
            }
            Assert.Equal(backing, top.GetProperty("backing-filename").GetString());
            Assert.Equal(backingFormat, top.GetProperty("backing-filename-format").GetString());
        }
        if (!flat)
            foreach (string other in Others)
            {
                string t = Path.Combine(target, other);
                string fmt = other.EndsWith(".qcow2", StringComparison.Ordinal) ? "qcow2" : "raw";
                Tool.Ok(Tool.QemuImg(Root, "compare", "-f", fmt, "-F", fmt, other, t));
                if (fmt == "qcow2") Tool.Ok(Tool.QemuImg(Root, "check", t));
            }
        // Nothing half-written is left, under a final name or a temporary one.
        Assert.Empty(Directory.EnumerateFiles(target, "*.qed-migrate-tmp", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }));
    }

    public void Dispose() => Dir.Dispose();
}
