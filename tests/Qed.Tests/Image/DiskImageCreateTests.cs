using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Tests.Image;

/// <summary>
/// <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/> and its
/// <see cref="IBlockStorage"/> twin: the image comes back open for writing and locked; the options are the format's
/// own or the common ones, another format's are refused naming both; a failure removes only a file the call created.
/// </summary>
public sealed class DiskImageCreateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-create").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string P(string name) => Path.Combine(_dir, name);

    public static TheoryData<ImageFormat> Formats => new() { ImageFormat.Qed, ImageFormat.Qcow2, ImageFormat.Raw };

    [Theory]
    [MemberData(nameof(Formats))]
    public async Task ReturnsTheImageOpenForWritingAndLocked(ImageFormat format)
    {
        string path = P("a.img");
        var data = new byte[5000];
        new Random(3).NextBytes(data);
        await using (var image = await DiskImage.CreateAsync(path, format, new ImageCreateOptions { Size = 3 << 20 }))
        {
            Assert.Equal(format, image.Format);
            Assert.Equal(3 << 20, image.Size);
            Assert.False(image.IsReadOnly);
            await image.WriteAsync(70_000, data);
            var back = new byte[data.Length];
            await image.ReadAsync(70_000, back);
            Assert.Equal(data, back);
            // Held as a read-write open holds it: neither a writer nor a reader gets in beside it.
            await Assert.ThrowsAsync<ImageLockedException>(() => DiskImage.OpenAsync(path));
            await Assert.ThrowsAsync<ImageLockedException>(() => DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true }));
        }
        await using (var again = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = format }))
        {
            var back = new byte[data.Length];
            await again.ReadAsync(70_000, back);
            Assert.Equal(data, back);
        }
    }

    [Fact]
    public async Task TheFormatsOwnOptionsAreApplied()
    {
        await using (var qed = (QedImage)await DiskImage.CreateAsync(P("a.qed"), ImageFormat.Qed,
            new QedCreateOptions { Size = 1 << 20, ClusterSize = 4096, TableSize = 2 }))
        {
            Assert.Equal(4096, qed.ClusterSize);
            Assert.Equal(2u, qed.Header.TableSize);
        }
        await using (var qcow2 = (Qcow2Image)await DiskImage.CreateAsync(P("a.qcow2"), ImageFormat.Qcow2,
            new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 512, Version = 2 }))
        {
            Assert.Equal(512, qcow2.ClusterSize);
            Assert.Equal(2, qcow2.Version);
        }
        // The common options take each format's defaults.
        await using (var qcow2 = await DiskImage.CreateAsync(P("b.qcow2"), ImageFormat.Qcow2, new ImageCreateOptions { Size = 1 << 20 }))
            Assert.Equal(65536, qcow2.ClusterSize);
    }

    [Theory]
    [InlineData(ImageFormat.Qed, typeof(Qcow2CreateOptions))]
    [InlineData(ImageFormat.Qcow2, typeof(QedCreateOptions))]
    [InlineData(ImageFormat.Raw, typeof(QedCreateOptions))]
    [InlineData(ImageFormat.Raw, typeof(Qcow2CreateOptions))]
    public async Task AnotherFormatsOptionsAreRefusedNamingBoth(ImageFormat format, Type optionsType)
    {
        var options = (ImageCreateOptions)Activator.CreateInstance(optionsType)!;
        options = options with { Size = 1 << 20 };
        string path = P("a.img");
        var e = await Assert.ThrowsAsync<ArgumentException>(() => DiskImage.CreateAsync(path, format, options));
        Assert.Contains(optionsType.Name, e.Message);
        Assert.Contains($"ImageFormat.{format}", e.Message);
        Assert.Equal("options", e.ParamName);
        Assert.False(File.Exists(path));
        // The same over storage.
        var storage = new MemoryStorage();
        await Assert.ThrowsAsync<ArgumentException>(() => DiskImage.CreateAsync(storage, format, options));
        Assert.Equal(0, storage.Length);
    }

    [Fact]
    public async Task RawTakesNoBackingFileNorClusterSize()
    {
        string path = P("a.raw");
        await File.WriteAllBytesAsync(P("base.raw"), new byte[4096]);
        var e = await Assert.ThrowsAsync<ArgumentException>(() =>
            DiskImage.CreateAsync(path, ImageFormat.Raw, new ImageCreateOptions { Size = 1 << 20, BackingFile = "base.raw" }));
        Assert.Contains("raw", e.Message);
        Assert.Contains("Backing file", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() =>
            DiskImage.CreateAsync(path, ImageFormat.Raw, new ImageCreateOptions { Size = 1 << 20, ClusterSize = 4096 }));
        Assert.Contains("ClusterSize", e.Message);
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData(ImageFormat.Qed)]
    [InlineData(ImageFormat.Qcow2)]
    public async Task AFailureAfterTheFileIsMadeRemovesIt(ImageFormat format)
    {
        // The backing file is opened shared for its size (as qemu-img create opens it), but the new image's chain is
        // opened as any open is: beside a writer of the backing file that fails, after the file was written.
        string basePath = P("base.qed");
        await (await DiskImage.CreateAsync(basePath, ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 })).DisposeAsync();
        string path = P("top.img");
        await using (var writer = await DiskImage.OpenAsync(basePath))
            await Assert.ThrowsAsync<ImageLockedException>(() =>
                DiskImage.CreateAsync(path, format, new ImageCreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed }));
        Assert.False(File.Exists(path), "the file the failed call created was left behind");
        // Nothing is left locked: the same call now succeeds.
        await using var top = await DiskImage.CreateAsync(path, format, new ImageCreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed });
        Assert.Equal(1 << 20, top.Size);
        Assert.Equal(ImageFormat.Qed, top.Backing!.Format);
    }

    [Fact]
    public async Task ARawImageTooLargeForTheFileSystemLeavesNoFile()
    {
        string path = P("huge.raw");
        // ext4 and xfs refuse a file of 2^63 - 1 bytes (EFBIG, which .NET reports as out of range), once the file exists.
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => DiskImage.CreateAsync(path, ImageFormat.Raw, new ImageCreateOptions { Size = long.MaxValue }));
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData(ImageFormat.Qed)]
    [InlineData(ImageFormat.Qcow2)]
    public async Task AFailureNeverRemovesAFileThatWasThere(ImageFormat format)
    {
        string basePath = P("base.qed");
        await (await DiskImage.CreateAsync(basePath, ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 })).DisposeAsync();
        string path = P("top.img");
        await File.WriteAllBytesAsync(path, new byte[100]);
        await using (var writer = await DiskImage.OpenAsync(basePath))
            await Assert.ThrowsAsync<ImageLockedException>(() =>
                DiskImage.CreateAsync(path, format, new ImageCreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed }));
        Assert.True(File.Exists(path), "a file that existed before the call was removed");
    }

    [Fact]
    public async Task ARawImageTooLargeKeepsAFileThatWasThere()
    {
        string path = P("huge.raw");
        await File.WriteAllBytesAsync(path, new byte[100]);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => DiskImage.CreateAsync(path, ImageFormat.Raw, new ImageCreateOptions { Size = long.MaxValue }));
        Assert.True(File.Exists(path));
    }

    [Theory]
    [InlineData(ImageFormat.Qed)]
    [InlineData(ImageFormat.Qcow2)]
    public async Task AnUncheckedBackingFileIsRecordedAndTheImageComesBackReadOnlyWithoutItsChain(ImageFormat format)
    {
        string path = P("top.img");
        var options = new ImageCreateOptions { Size = 2 << 20, BackingFile = "not-yet.qed", BackingFormat = ImageFormat.Qed, BackingCheck = BackingFileCheck.None };
        await using (var top = await DiskImage.CreateAsync(path, format, options))
        {
            Assert.True(top.IsReadOnly);
            Assert.Null(top.Backing);
            await Assert.ThrowsAsync<InvalidOperationException>(async () => await top.WriteAsync(0, new byte[512]));
        }
        // Once the backing file is there, the image opens over it.
        await (await DiskImage.CreateAsync(P("not-yet.qed"), ImageFormat.Qed, new ImageCreateOptions { Size = 2 << 20 })).DisposeAsync();
        await using (var top = await DiskImage.OpenAsync(path))
            Assert.Equal(ImageFormat.Qed, top.Backing!.Format);
        // Unchecked, the size cannot come from the backing file.
        var e = await Assert.ThrowsAsync<ArgumentException>(() => DiskImage.CreateAsync(P("other.img"), format, options with { Size = null }));
        Assert.Contains("size", e.Message);
        Assert.False(File.Exists(P("other.img")));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public async Task OverStorageTheImageComesBackOpenAndOwnsIt(ImageFormat format)
    {
        var storage = new MemoryStorage("mem.img");
        var data = new byte[3000];
        new Random(5).NextBytes(data);
        await using (var image = await DiskImage.CreateAsync(storage, format, new ImageCreateOptions { Size = 1 << 20 }))
        {
            Assert.Equal(format, image.Format);
            Assert.False(image.IsReadOnly);
            await image.WriteAsync(4000, data);
        }
        Assert.Equal(format, await DiskImage.ProbeFormatAsync(storage));
        await using (var again = await DiskImage.CreateAsync(new MemoryStorage(), format, new ImageCreateOptions { Size = 1 << 20 }))
            Assert.Equal(1 << 20, again.Size);
        await using var reopened = format switch
        {
            ImageFormat.Qed => (DiskImage)await QedImage.OpenAsync(new MemoryStorage(storage.ToArray())),
            ImageFormat.Qcow2 => await Qcow2Image.OpenAsync(new MemoryStorage(storage.ToArray())),
            _ => new RawImage(new MemoryStorage(storage.ToArray()), readOnly: true),
        };
        var back = new byte[data.Length];
        await reopened.ReadAsync(4000, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task ReadOnlyStorageIsRefused()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() =>
            DiskImage.CreateAsync(new MemoryStorage("ro", access: FileAccess.Read), ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 }));
        Assert.Equal("storage", e.ParamName);
    }

    [Fact]
    public async Task OverStorageARelativeBackingFileResolvesFromTheStoragesName()
    {
        await using (var b = await DiskImage.CreateAsync(P("base.qed"), ImageFormat.Qed, new ImageCreateOptions { Size = 1 << 20 }))
            await b.WriteAsync(0, new byte[] { 7, 7, 7 });
        await using var top = await DiskImage.CreateAsync(new MemoryStorage(P("top.qcow2")), ImageFormat.Qcow2,
            new ImageCreateOptions { BackingFile = "base.qed", BackingFormat = ImageFormat.Qed });
        Assert.Equal(1 << 20, top.Size);
        var back = new byte[3];
        await top.ReadAsync(0, back);
        Assert.Equal(new byte[] { 7, 7, 7 }, back);
    }
}
