using System.Text.Json;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Map;

/// <summary><c>qed map</c> prints what <c>qemu-img map</c> prints, field for field and byte for byte.</summary>
public class MapInteropTests
{
    public static TheoryData<string> Samples => new(SampleImages.Names);

    [Theory]
    [MemberData(nameof(Samples))]
    public void JsonAgreesFieldForField(string sample)
    {
        using var dir = new TempDir();
        string image = SampleImages.Make(dir, sample);
        var ours = Tool.Ok(dir.Qed("map", "--output=json", image));
        var theirs = Tool.Ok(dir.QemuImg("map", "--output=json", image));
        Assert.Equal(Entries(theirs.StdOut), Entries(ours.StdOut));
        Assert.Equal(theirs.StdOut, ours.StdOut);
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void HumanTextMatches(string sample)
    {
        using var dir = new TempDir();
        string image = SampleImages.Make(dir, sample);
        Assert.Equal(Tool.Ok(dir.QemuImg("map", image)).StdOut, Tool.Ok(dir.Qed("map", image)).StdOut);
    }

    [Theory]
    [InlineData("4096", "100000")]
    [InlineData("1M", "1")]
    [InlineData("65536", "3M")]
    [InlineData("0", "0")]
    public void StartOffsetAndMaxLengthMatch(string start, string length)
    {
        using var dir = new TempDir();
        string image = SampleImages.Make(dir, "data-zero-raw-backing");
        string[] args = ["map", "--output=json", "--start-offset", start, "--max-length", length, image];
        Assert.Equal(Tool.Ok(dir.QemuImg(args)).StdOut, Tool.Ok(dir.Qed(args)).StdOut);
    }

    [Fact]
    public void ImagesWrittenByQedMapTheSameThroughBothTools()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "2M"));
        Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "base.raw"));
        Tool.Ok(dir.Qed("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed", "4M"));
        Tool.Ok(dir.Qed("io", "-c", "write -P 1 64k 64k", "-c", "write -z 512k 128k", "-c", "write -P 2 3M 4k", "-c", "write -P 3 1000 10", "img.qed"));
        Assert.Equal(Tool.Ok(dir.QemuImg("map", "--output=json", "img.qed")).StdOut, Tool.Ok(dir.Qed("map", "--output=json", "img.qed")).StdOut);
    }

    private static List<string> Entries(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateArray()
            .Select(e => string.Join(",", e.EnumerateObject().Select(p => $"{p.Name}={p.Value.GetRawText()}")))
            .ToList();
    }
}
