using Qed.Formats.Qed;

namespace Qed.Tests.Image;

/// <summary>
/// <see cref="DiskImageStream"/>'s leaveOpen, as GZipStream's: false (the default) disposes the image with the
/// stream, releasing its file and lock; true leaves the image open and usable.
/// </summary>
public sealed class DiskImageStreamTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-imagestream").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private async Task<string> NewImageAsync()
    {
        string path = Path.Combine(_dir, "a.qed");
        await QedImage.CreateAsync(path, new QedCreateOptions { Size = 1 << 20 });
        return path;
    }

    [Fact]
    public async Task ByDefaultDisposingTheStreamDisposesTheImage()
    {
        string path = await NewImageAsync();
        var image = await DiskImage.OpenAsync(path);
        using (var stream = new DiskImageStream(image))
        {
            stream.Write([1, 2, 3, 4]);
        }
        // The image's write lock went with it: a second writer may open the file now.
        await using var again = await DiskImage.OpenAsync(path);
        var buffer = new byte[4];
        await again.ReadAsync(0, buffer);
        Assert.Equal([1, 2, 3, 4], buffer);
    }

    [Fact]
    public async Task LeaveOpenKeepsTheImageOpenAfterTheStream()
    {
        string path = await NewImageAsync();
        await using var image = await DiskImage.OpenAsync(path);
        await using (var stream = new DiskImageStream(image, leaveOpen: true))
        {
            stream.Position = 512;
            await stream.WriteAsync(new byte[] { 9, 8, 7 });
        }
        var buffer = new byte[3];
        await image.ReadAsync(512, buffer); // still open and usable
        Assert.Equal([9, 8, 7], buffer);
        await Assert.ThrowsAsync<ImageLockedException>(() => DiskImage.OpenAsync(path)); // and still holds its lock
    }
}
