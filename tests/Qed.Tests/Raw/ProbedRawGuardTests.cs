using System.Buffers.Binary;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Tests.Raw;

/// <summary>
/// <see cref="RawImage.IsProbed"/>: a probed raw image refuses writes that leave a QED or qcow2 magic in block 0,
/// however the magic is assembled (one write, several partial ones, zeroes completing it), and only those.
/// </summary>
public class ProbedRawGuardTests
{
    private static RawImage Probed(int size = 1 << 20) => new(new MemoryStorage(new byte[size]), readOnly: false, probed: true);

    private static byte[] QedMagic() { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, 0x00444551); return b; }

    private static byte[] Qcow2Magic() { var b = new byte[8]; BinaryPrimitives.WriteUInt32BigEndian(b, 0x514649fb); b[7] = 3; return b; }

    [Fact]
    public async Task AHeaderInOneWriteIsRefusedAndNothingIsWritten()
    {
        await using var image = Probed();
        var block = new byte[512];
        Qcow2Magic().CopyTo(block, 0);
        var e = await Assert.ThrowsAsync<ProbedRawWriteException>(() => image.WriteAsync(0, block).AsTask());
        Assert.IsAssignableFrom<InvalidOperationException>(e); // the NBD server answers EPERM
        Assert.Equal("qcow2", e.ProbedFormat);
        Assert.Contains("'memory'", e.Message);
        var back = new byte[512];
        await image.ReadAsync(0, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task AMagicAssembledFromPartialWritesOrZeroesIsRefused()
    {
        await using var image = Probed();
        byte[] magic = QedMagic();
        await image.WriteAsync(0, magic.AsMemory(0, 2));
        await Assert.ThrowsAsync<ProbedRawWriteException>(() => image.WriteAsync(2, magic.AsMemory(2, 2)).AsTask());

        // "QED\x01" is no magic; zeroing its last byte makes one.
        await image.WriteAsync(2, new byte[] { 0x44, 0x01 });
        await Assert.ThrowsAsync<ProbedRawWriteException>(() => image.WriteZeroesAsync(3, 1).AsTask());
        await Assert.ThrowsAsync<ProbedRawWriteException>(() => image.DiscardAsync(3, 4096).AsTask());
    }

    [Fact]
    public async Task OtherWritesPass()
    {
        await using var image = Probed();
        byte[] magic = QedMagic();
        await image.WriteAsync(512, magic);              // past block 0
        await image.WriteAsync(1, magic);                // not at the start
        await image.WriteAsync(0, new byte[4096]);       // block 0, no magic
        await image.WriteZeroesAsync(0, 1 << 20);
        byte[] qcowVersion0 = Qcow2Magic();
        qcowVersion0[7] = 0;
        await image.WriteAsync(8, qcowVersion0);
    }

    [Fact]
    public async Task ANamedFormatOrAReadOnlyImageHasNoGuard()
    {
        await using var named = new RawImage(new MemoryStorage(new byte[4096]), readOnly: false);
        Assert.False(named.IsProbed);
        await named.WriteAsync(0, QedMagic());

        // A file shorter than block 0 is guarded over what it has.
        await using var tiny = Probed(16);
        await Assert.ThrowsAsync<ProbedRawWriteException>(() => tiny.WriteAsync(0, QedMagic()).AsTask());
    }

    [Fact]
    public async Task OpeningAFileWithoutAFormatProbesIt()
    {
        string path = Path.Combine(Path.GetTempPath(), $"qed-probe-{Guid.NewGuid():N}.raw");
        await File.WriteAllBytesAsync(path, new byte[65536]);
        try
        {
            await using (var probed = await DiskImage.OpenAsync(path, new ImageOpenOptions()))
            {
                Assert.True(((RawImage)probed).IsProbed);
                await Assert.ThrowsAsync<ProbedRawWriteException>(() => probed.WriteAsync(0, QedMagic()).AsTask());
            }
            await using (var named = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormat.Raw }))
            {
                Assert.False(((RawImage)named).IsProbed);
                await named.WriteAsync(0, QedMagic());
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
