using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.StreamOpen;

/// <summary>
/// Images made by qemu-img and qemu-io read the same through <see cref="DiskImage.OpenAsync(Stream, ImageOpenOptions?, bool, CancellationToken)"/>
/// from a MemoryStream; an image written through a FileStream is one qemu-img checks clean and qemu-io reads back.
/// </summary>
public class StreamOpenInteropTests
{
    [Theory]
    [InlineData("qed")]
    [InlineData("qcow2")]
    public async Task AQemuMadeImageInAMemoryStreamReadsAsQemuWroteIt(string format)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", format, "a.img", "16M"));
        Tool.Ok(dir.QemuIo("-f", format, "-c", "write -P 0x5a 1M 64k", "-c", "write -z 4M 64k", "a.img"));

        await using var image = await DiskImage.OpenAsync(new MemoryStream(dir.Bytes("a.img"), writable: false));
        Assert.Equal(16L << 20, image.Size);
        Assert.True(image.IsReadOnly);
        var buffer = new byte[64 << 10];
        await image.ReadAsync(1 << 20, buffer);
        Assert.All(buffer, b => Assert.Equal(0x5a, b));
        await image.ReadAsync(4L << 20, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData("qed")]
    [InlineData("qcow2")]
    public async Task WritesThroughAFileStreamMakeAnImageQemuImgChecksClean(string format)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", format, "a.img", "16M"));
        var file = new FileStream(dir["a.img"], FileMode.Open, FileAccess.ReadWrite);
        await using (var image = await DiskImage.OpenAsync(file)) // disposes the FileStream with it
        {
            Assert.Equal(dir["a.img"], image.Name);
            var data = new byte[192 << 10];
            Array.Fill(data, (byte)0xc3);
            await image.WriteAsync(3L << 20, data);
            await image.WriteZeroesAsync(8L << 20, 1 << 20);
        }
        Assert.Throws<ObjectDisposedException>(() => file.Length);

        var check = dir.QemuImg("check", "-f", format, "a.img");
        // QEMU 7.2 reports spurious leaks on clean QED images (its bug: clusters divided by cluster_size - 1); no
        // corruption either way, which is exit 0 or 3 (leaks only) and never 2.
        Assert.True(check.ExitCode == 0 || (format == "qed" && check.ExitCode == 3), check.ToString());
        Assert.DoesNotContain("ERROR", check.StdOut + check.StdErr);
        Tool.Ok(dir.QemuIo("-f", format, "-c", "read -P 0xc3 3M 192k", "-c", "read -P 0 8M 1M", "-c", "read -P 0 0 3M", "a.img"));
    }
}
