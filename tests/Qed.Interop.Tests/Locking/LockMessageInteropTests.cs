using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Locking;

/// <summary>
/// qed resize beside a qemu-io holding the image (read-write or read-only) says what qemu-img resize says, generated
/// live: qemu-img opens the image read-write before it looks at any size, so a relative size, a shrink without
/// --shrink and a negative result are all refused with "Failed to get "write" lock".
/// </summary>
public class LockMessageInteropTests
{
    public static TheoryData<string, string> Resizes => new()
    {
        { "rw", "+1M" }, { "rw", "-1M" }, { "rw", "16M" }, { "ro", "+1M" }, { "ro", "-1M" }, { "ro", "4M" }, { "ro", "-100M" },
    };

    [Theory]
    [MemberData(nameof(Resizes))]
    public void ResizeOfAnImageInUseIsRefusedWithQemuImgsWords(string holderMode, string size)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "a.qed", "8M"));
        using (holderMode == "ro" ? LockHolder.QemuIo(dir, "a.qed", "-r") : LockHolder.QemuIo(dir, "a.qed"))
        {
            var qemu = dir.QemuImg("resize", "a.qed", size);
            var qed = dir.Qed("resize", "a.qed", size);
            Assert.NotEqual(0, qemu.ExitCode);
            Assert.True(qemu.ExitCode == qed.ExitCode, $"{qemu}\n{qed}");
            Assert.Equal(qemu.StdErr.Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), qed.StdErr);
        }
    }
}
