using Qed.Interop.Tests.Support;
using Qed.Storage;

namespace Qed.Interop.Tests.Io;

/// <summary>
/// Issue 12 item 7: <c>qed io -c 'discard ...'</c> releases host space and leaves the image check-clean (qemu-img check
/// and qed check exit 0, where a discard used to leave leaks and exit 3). Discarded whole clusters read as zeroes, with
/// or without a backing file (as qcow2 v3 discards); partial clusters keep their data.
/// </summary>
public class DiscardInteropTests
{
    private static long Allocated(string path)
    {
        using var file = FileStorage.Open(path, FileAccess.Read);
        return file.AllocatedBytes ?? throw new InvalidOperationException($"the host cannot tell holes from data in {path}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DiscardReleasesSpaceReadsZeroesAndLeavesTheImageClean(bool withBacking)
    {
        using var dir = new TempDir();
        const int size = 8 << 20;
        var expected = new byte[size];
        if (withBacking)
        {
            new Random(7).NextBytes(expected);
            File.WriteAllBytes(dir["base.raw"], expected);
            Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "d.qed", "8M"));
        }
        else
        {
            Tool.Ok(dir.QemuImg("create", "-f", "qed", "d.qed", "8M"));
        }
        Tool.Ok(dir.QemuIo("-f", "qed", "-c", "write -P 0x5a 0 4M", "d.qed"));
        Array.Fill(expected, (byte)0x5a, 0, 4 << 20);
        long before = Allocated(dir["d.qed"]);

        // 0..2M whole clusters; 3M+1k for 137 KiB covers only the cluster at 3M+64k (64 KiB clusters); 6M holds no data.
        Tool.Ok(dir.Qed("io", "-c", "discard 0 2M", "-c", "discard 3146752 140288", "-c", "discard 6M 1M", "d.qed"));
        Array.Clear(expected, 0, 2 << 20);
        Array.Clear(expected, (3 << 20) + 65536, 65536);
        File.WriteAllBytes(dir["expected.raw"], expected);

        var qemu = dir.QemuImg("check", "d.qed");
        Assert.True(qemu.ExitCode == 0, qemu.ToString());
        var ours = dir.Qed("check", "d.qed");
        Assert.True(ours.ExitCode == 0, ours.ToString());
        QemuCheck.AssertClean(dir, "d.qed");
        Tool.Ok(dir.QemuImg("compare", "-f", "qed", "-F", "raw", "d.qed", "expected.raw"));

        long after = Allocated(dir["d.qed"]);
        Assert.True(after <= before - (2 << 20), $"allocated bytes went from {before} to {after}: the discard released no space");
    }
}
