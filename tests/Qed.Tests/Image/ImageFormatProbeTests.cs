using Qed.Storage;

namespace Qed.Tests.Image;

/// <summary>
/// <see cref="DiskImage.ProbeFormatAsync(string, CancellationToken)"/> and its storage twin: QED and qcow2 by magic,
/// anything else raw, as QEMU probes; an open without a format probes the same way.
/// </summary>
public sealed class ImageFormatProbeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-probe").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [InlineData(ImageFormat.Qed)]
    [InlineData(ImageFormat.Qcow2)]
    [InlineData(ImageFormat.Raw)]
    public async Task EachFormatIsProbedAsItself(ImageFormat format)
    {
        string path = Path.Combine(_dir, "a.img");
        await (await DiskImage.CreateAsync(path, format, new ImageCreateOptions { Size = 1 << 20 })).DisposeAsync();
        Assert.Equal(format, await DiskImage.ProbeFormatAsync(path));
        Assert.Equal(format, await DiskImage.ProbeFormatAsync(new MemoryStorage(await File.ReadAllBytesAsync(path))));
        await using var opened = await DiskImage.OpenAsync(path);
        Assert.Equal(format, opened.Format);
    }

    [Fact]
    public async Task AShortOrForeignFileIsRaw()
    {
        Assert.Equal(ImageFormat.Raw, await DiskImage.ProbeFormatAsync(new MemoryStorage()));
        Assert.Equal(ImageFormat.Raw, await DiskImage.ProbeFormatAsync(new MemoryStorage("QFI"u8)));
        // A QED magic in a file shorter than a QED header is not taken for QED (QEMU reads the whole header).
        Assert.Equal(ImageFormat.Raw, await DiskImage.ProbeFormatAsync(new MemoryStorage("QED\0"u8)));
        Assert.Equal(ImageFormat.Raw, await DiskImage.ProbeFormatAsync(new MemoryStorage(new byte[4096])));
    }

    [Fact]
    public async Task AProbeTakesNoLockAndLeavesTheFileAlone()
    {
        string path = Path.Combine(_dir, "a.qed");
        await using var writer = await DiskImage.CreateAsync(path, ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 });
        byte[] before = await File.ReadAllBytesAsync(path);
        Assert.Equal(ImageFormat.Qed, await DiskImage.ProbeFormatAsync(path));
        Assert.Equal(before, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task AMissingFileIsNamed()
    {
        string path = Path.Combine(_dir, "missing.qed");
        var e = await Assert.ThrowsAsync<FileNotFoundException>(() => DiskImage.ProbeFormatAsync(path));
        Assert.Equal($"Could not open '{path}': No such file or directory", e.Message);
        Assert.Equal(path, e.FileName);
    }

    [Fact]
    public async Task ANamedFormatIsNotProbed()
    {
        string path = Path.Combine(_dir, "a.qed");
        await (await DiskImage.CreateAsync(path, ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 })).DisposeAsync();
        await using var raw = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormat.Raw, ReadOnly = true });
        Assert.Equal(ImageFormat.Raw, raw.Format);
        Assert.Equal(new FileInfo(path).Length, raw.Size);
    }
}
