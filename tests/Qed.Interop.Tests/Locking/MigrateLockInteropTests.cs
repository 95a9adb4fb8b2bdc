using Qed.Interop.Tests.Support;
using Qed.Operations.Migration;

namespace Qed.Interop.Tests.Locking;

/// <summary>
/// A migration keeps its source's shared lock for the whole conversion, so a QEMU writer is refused throughout, also
/// where image locks are POSIX record locks (QED_PORTABLE_IO, macOS): there closing any descriptor of a file drops all
/// of the process's locks on it, and the migration reads the source more than once (check, checksum, copy).
/// </summary>
public class MigrateLockInteropTests
{
    [Fact]
    public async Task AQemuWriterIsRefusedWhileTheSourceIsConverted()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "src.qed", "64M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 0x5a 0 8M", "src.qed"));
        byte[] before = dir.Bytes("src.qed");
        var writers = new List<ToolResult>();
        // Reported from the copy, after the check and the checksum have read the source: the lock must still hold.
        var progress = new Inline(p =>
        {
            if (p.BytesDone > 0 && writers.Count == 0) writers.Add(dir.QemuIo("-c", "write -P 0x11 0 512", "src.qed"));
        });
        var report = await ImageFile.MigrateAsync([dir["src.qed"]], dir["out"], new MigrationOptions { Jobs = 1 }, progress);

        Assert.Equal(MigrationOutcome.Migrated, Assert.Single(report.Entries).Outcome);
        var writer = Assert.Single(writers);
        Assert.True(writer.ExitCode != 0, $"qemu-io wrote the source while it was being migrated:\n{writer}");
        Assert.Contains("Failed to get \"write\" lock", writer.StdErr);
        Assert.Equal(before, dir.Bytes("src.qed"));
    }

    /// <summary>Reports on the reporting thread (Progress&lt;T&gt; would post them later, after the job).</summary>
    private sealed class Inline(Action<ImageProgress> report) : IProgress<ImageProgress>
    {
        public void Report(ImageProgress value)
        {
            lock (this) report(value);
        }
    }
}
