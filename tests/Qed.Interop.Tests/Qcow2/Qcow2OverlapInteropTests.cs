using System.Buffers.Binary;
using Qed.Interop.Tests.Support;
using Dir = Qed.Interop.Tests.Support.TempDir;

namespace Qed.Interop.Tests.Qcow2;

/// <summary>
/// A corrupt entry that points data (or a table) at other metadata makes a write fail instead of overwriting that
/// metadata, as QEMU's overlap checks do: the image made by qemu-img and corrupted by hand keeps its L1 table, refcount
/// table and blocks byte for byte, gets the corrupt bit (version 3), refuses later writes, and <c>qemu-img check</c>
/// reports exactly what it reported before the write.
/// </summary>
public sealed class Qcow2OverlapInteropTests
{
    private const ulong Copied = 1UL << 63;

    /// <summary>
    /// <paramref name="corruption"/>: "l2-data" points L2[0][1] at the L1 table; "refcount-table" points refcount table
    /// entry 0 (the block counting the clusters the write allocates) at the L1 table; "l1-entry" points L1[1] at the
    /// refcount table, which then reads as an L2 table: its first entry maps guest offset 512M onto the refcount block,
    /// and a write at 600M (unallocated there) would have to update the refcount table as an L2 table.
    /// </summary>
    [Theory]
    [InlineData("1.1", "l2-data", "64k", "active L1 table")]
    [InlineData("0.10", "l2-data", "64k", "active L1 table")]
    [InlineData("1.1", "refcount-table", "64k", "active L1 table")]
    [InlineData("0.10", "refcount-table", "64k", "active L1 table")]
    [InlineData("1.1", "l1-entry", "512M", "refcount block")]
    [InlineData("0.10", "l1-entry", "512M", "refcount block")]
    [InlineData("1.1", "l1-entry", "600M", "refcount table")]
    [InlineData("0.10", "l1-entry", "600M", "refcount table")]
    public void WritesOverMetadataAreRefusedAndTheImageMarkedCorrupt(string compat, string corruption, string at, string overlapped)
    {
        using var dir = new Dir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qcow2", "-o", $"compat={compat}", "a.qcow2", "1G"));
        Tool.Ok(dir.QemuIo("-f", "qcow2", "-c", "write -P 0x11 0 4k", "a.qcow2"));
        Corrupt(dir["a.qcow2"], corruption);
        File.Copy(dir["a.qcow2"], dir["theirs.qcow2"]);
        var before = dir.Bytes("a.qcow2");
        var checkBefore = dir.QemuImg("check", "a.qcow2");
        Assert.NotEqual(0, checkBefore.ExitCode);

        // The reference: QEMU refuses the write too (and every later one).
        var theirs = dir.QemuIo("-f", "qcow2", "-c", $"write -P 0x22 {at} 4k", "-c", "write -P 0x33 300M 4k", "theirs.qcow2");
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains("Marking image as corrupt: Preventing invalid write on metadata", theirs.StdErr);

        var ours = dir.Qed("io", "-f", "qcow2", "-c", $"write -P 0x22 {at} 4k", "-c", "write -P 0x33 300M 4k", "a.qcow2");
        Assert.True(ours.ExitCode == 1, ours.ToString());
        // (qemu-io prints "write failed" on stdout and qed io on stderr: read both.)
        var lines = (ours.StdOut + ours.StdErr).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 2 && lines.All(l => l.StartsWith("write failed: ", StringComparison.Ordinal)), ours.ToString());
        Assert.Contains($"overlaps the {overlapped}", lines[0]);
        Assert.Contains("refused", lines[1]);

        // Nothing the image held changed but the corrupt bit (incompatible_features bit 1, version 3 only).
        var after = dir.Bytes("a.qcow2");
        Assert.True(after.Length >= before.Length, $"the file shrank from {before.Length} to {after.Length} bytes");
        if (compat == "1.1") before[79] |= 2;
        int differs = before.AsSpan().CommonPrefixLength(after);
        Assert.True(differs == before.Length, $"the file changed at offset 0x{differs:x}");

        // qemu-img check reports the same as before, nothing worse.
        var checkAfter = dir.QemuImg("check", "a.qcow2");
        Assert.Equal(checkBefore.ExitCode, checkAfter.ExitCode);
        Assert.Equal(Findings(checkBefore), Findings(checkAfter));

        if (compat == "1.1")
        {
            Assert.Contains("Image is corrupt; cannot be opened read/write", dir.QemuIo("-f", "qcow2", "-c", "write 0 4k", "a.qcow2").StdErr);
            var again = dir.Qed("io", "-f", "qcow2", "-c", "write 0 4k", "a.qcow2");
            Assert.NotEqual(0, again.ExitCode);
            Assert.Contains("marked corrupt", again.StdErr);
            Tool.Ok(dir.Qed("io", "-r", "-f", "qcow2", "-c", "read -P 0x11 0 4k", "a.qcow2"));
        }
    }

    /// <summary>qemu-img check's findings, without the lines that depend on the file length.</summary>
    private static string[] Findings(ToolResult check) =>
        (check.StdOut + check.StdErr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Where(l => !l.StartsWith("Image end offset", StringComparison.Ordinal) && !l.Contains("allocated,", StringComparison.Ordinal))
        .Order(StringComparer.Ordinal).ToArray();

    private static void Corrupt(string path, string corruption)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        ulong Read(long at)
        {
            var b = new byte[8];
            f.Position = at;
            f.ReadExactly(b);
            return BinaryPrimitives.ReadUInt64BigEndian(b);
        }
        void Write(long at, ulong value)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, value);
            f.Position = at;
            f.Write(b);
        }
        long l1 = (long)Read(40), refTable = (long)Read(48);
        long l2 = (long)(Read(l1) & 0x00ff_ffff_ffff_fe00UL);
        switch (corruption)
        {
            case "l2-data": Write(l2 + 8, Copied | (ulong)l1); break;
            case "refcount-table": Write(refTable, (ulong)l1); break;
            case "l1-entry": Write(l1 + 8, Copied | (ulong)refTable); break;
            default: throw new ArgumentException(corruption);
        }
    }
}
