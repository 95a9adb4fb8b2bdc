using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Measure;

/// <summary>
/// <c>qed measure</c> agrees with <c>qemu-img measure</c> for qcow2 and raw; for QED (which QEMU cannot measure) the
/// required size is the size of the file <c>qed convert</c> writes, and fully-allocated that of a fully written image.
/// </summary>
public class MeasureInteropTests
{
    private static (long Required, long Full) Parse(ToolResult result)
    {
        using var json = JsonDocument.Parse(Tool.Ok(result).StdOut);
        return (json.RootElement.GetProperty("required").GetInt64(), json.RootElement.GetProperty("fully-allocated").GetInt64());
    }

    [Theory]
    [InlineData("qcow2", "1G", "")]
    [InlineData("qcow2", "10G", "")]
    [InlineData("qcow2", "3000000", "")]
    [InlineData("qcow2", "1T", "")]
    [InlineData("qcow2", "1G", "cluster_size=4096")]
    [InlineData("qcow2", "5G", "cluster_size=2M")]
    [InlineData("raw", "3000000", "")]
    public void SizesMatchQemuImg(string format, string size, string options)
    {
        using var dir = new TempDir();
        string[] extra = options.Length == 0 ? [] : ["-o", options];
        var ours = Parse(dir.Qed(["measure", "--output=json", "-O", format, .. extra, "--size", size]));
        var theirs = Parse(dir.QemuImg(["measure", "--output=json", "-O", format, .. extra, "--size", size]));
        Assert.Equal(theirs, ours);
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public void ImageSizesMatchQemuImg(string format)
    {
        using var dir = new TempDir();
        string image = SampleImages.Make(dir, "data-zero-raw-backing");
        var ours = Parse(dir.Qed("measure", "--output=json", "-O", format, image));
        var theirs = Parse(dir.QemuImg("measure", "--output=json", "-O", format, image));
        Assert.Equal(theirs, ours);
    }

    [Fact]
    public void QedRequiredIsTheConvertedFileSize()
    {
        using var dir = new TempDir();
        string image = SampleImages.Make(dir, "data-zero-raw-backing");
        var (required, full) = Parse(dir.Qed("measure", "--output=json", "-O", "qed", image));
        Tool.Ok(dir.Qed("convert", "-O", "qed", image, "out.qed"));
        Assert.Equal(new FileInfo(dir["out.qed"]).Length, required);

        // Fully allocated: every cluster written.
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "full.qed", "4M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 4M", "full.qed"));
        Assert.Equal(new FileInfo(dir["full.qed"]).Length, full);
        Assert.Equal(327680, Parse(dir.Qed("measure", "--output=json", "-O", "qed", "--size", "1T")).Required);
    }
}
