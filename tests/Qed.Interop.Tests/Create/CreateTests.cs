using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Create;

/// <summary><c>qed create</c> writes exactly the bytes <c>qemu-img create</c> writes.</summary>
public class CreateTests
{
    [Theory]
    [InlineData("1G")]
    [InlineData("-o cluster_size=4k,table_size=2 1G")]
    [InlineData("-b base.raw -F raw")]
    [InlineData("-b base.qed -F qed")]
    [InlineData("-b base.raw -F raw 3G")]
    [InlineData("0")]
    [InlineData("1000")]
    [InlineData("64T")]
    public void ByteIdenticalToQemuImg(string arguments)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "5M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "7M"));
        string[] extra = arguments.Split(' ');
        // The size (if any) goes after the file name, the options before it.
        string[] options = extra.Where((_, i) => !IsSize(extra, i)).ToArray();
        string[] size = extra.Where((_, i) => IsSize(extra, i)).ToArray();
        Tool.Ok(dir.Qed(["create", "-f", "qed", .. options, "x.qed", .. size]));
        Tool.Ok(dir.QemuImg(["create", "-f", "qed", .. options, "y.qed", .. size]));
        Assert.Equal(dir.Bytes("y.qed").Length, dir.Bytes("x.qed").Length);
        Assert.True(dir.Bytes("y.qed").AsSpan().SequenceEqual(dir.Bytes("x.qed")), "the images differ");
    }

    private static bool IsSize(string[] args, int i) =>
        i == args.Length - 1 && char.IsDigit(args[i][0]) && (i == 0 || !args[i - 1].StartsWith('-'));
}
