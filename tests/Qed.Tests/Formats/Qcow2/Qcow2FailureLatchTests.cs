using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>The failure latch: what a write and a flush are refused with after each kind of failure (the types QED
/// uses, which NBD maps to EIO), and that only the first failure counts.</summary>
public sealed class Qcow2FailureLatchTests
{
    private static Qcow2FailureLatch Latch(MemoryStorage s, bool v3 = true) => new(s, "latch.qcow2", v3, Qcow2IncompatibleFeatures.None);

    [Fact]
    public void NothingIsRefusedBeforeAFailure()
    {
        var latch = Latch(new MemoryStorage());
        latch.ThrowIfFailed();
        latch.ThrowIfFailedForFlush();
        Assert.Null(latch.Failure);
    }

    [Fact]
    public async Task AfterACorruptionWritesNeedACheckAndFlushesAreFormatErrors()
    {
        var s = new MemoryStorage();
        var latch = Latch(s);
        var corrupt = new ImageFormatException("bad entry", "L2[0][0]", 4096);
        Assert.Same(corrupt, await latch.CorruptAsync(corrupt));
        var w = Assert.Throws<ImageNeedsCheckException>(latch.ThrowIfFailed);
        Assert.Equal("Writes to 'latch.qcow2' are refused until it is checked: bad entry", w.Message);
        Assert.Same(corrupt, w.InnerException);
        var f = Assert.Throws<ImageFormatException>(latch.ThrowIfFailedForFlush);
        Assert.Equal("L2[0][0]", f.Field);
        Assert.Equal(4096, f.FileOffset);
        Assert.Equal((ulong)Qcow2IncompatibleFeatures.Corrupt, await Qcow2Components.U64Async(s, Qcow2Header.IncompatibleOffset));
    }

    [Fact]
    public void AfterAFailedWriteBackWritesAndFlushesAreIOErrors()
    {
        var latch = Latch(new MemoryStorage());
        Assert.True(latch.Record(new IOException("disk gone")));
        Assert.False(latch.Record(new ImageFormatException("later")));
        Assert.Contains("disk gone", Assert.Throws<IOException>(latch.ThrowIfFailed).Message);
        Assert.Throws<IOException>(latch.ThrowIfFailedForFlush);
    }
}
