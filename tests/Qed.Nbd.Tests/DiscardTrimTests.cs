using Qed.Nbd.Tests.Support;
using Qed.Storage;

namespace Qed.Nbd.Tests;

/// <summary>
/// Issue 12 item 7 over NBD: a guest's TRIM (NBD_CMD_TRIM from qemu-io's discard) releases host space and leaves the
/// served image check-clean, where it used to leave leaks that made qemu-img check exit 3.
/// </summary>
public sealed class DiscardTrimTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task TrimReleasesSpaceAndTheImageStaysClean()
    {
        string qed = _dir["t.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, "16M");
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "write -P 0x55 0 8M", qed);
        long? before;
        using (var f = FileStorage.Open(qed, FileAccess.Read)) before = f.AllocatedBytes;

        await using (var server = await TestServer.StartAsync(qed))
        {
            var r = await Tool.RunAsync("qemu-io", ["-f", "raw", "-c", "discard 0 4M", "-c", "flush", "-c", "read -P 0 0 4M", "-c", "read -P 0x55 4M 4M", server.Uri()]);
            Assert.True(r.ExitCode == 0 && !r.Stdout.Contains("fail", StringComparison.OrdinalIgnoreCase), r.ToString());
        }

        var check = await Tool.RunAsync("qemu-img", ["check", qed]);
        Assert.True(check.ExitCode == 0, check.ToString());
        await Tool.CheckAsync("qemu-io", "-f", "qed", "-c", "read -P 0 0 4M", "-c", "read -P 0x55 4M 4M", qed);
        long? after;
        using (var f = FileStorage.Open(qed, FileAccess.Read)) after = f.AllocatedBytes;
        Assert.True(after <= before - (4 << 20), $"allocated bytes went from {before} to {after}: the trim released no space");
    }
}
