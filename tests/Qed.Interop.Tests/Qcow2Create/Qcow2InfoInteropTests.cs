using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Qcow2Create;

/// <summary>
/// <c>qed info</c> on qcow2 images prints what <c>qemu-img info</c> 7.2 prints, text and JSON, byte for byte (host disk
/// usage aside): the backing file and its format, the "Format specific information" block, the dirty and corrupt bits;
/// on images qemu-img made with various options, and along mixed qcow2/QED/raw chains with relative names.
/// </summary>
public class Qcow2InfoInteropTests
{
    [Theory]
    [InlineData("")]
    [InlineData("-o compat=0.10")]
    [InlineData("-o lazy_refcounts=on,refcount_bits=1")]
    [InlineData("-o refcount_bits=64,cluster_size=2M")]
    [InlineData("-o preallocation=metadata,cluster_size=4k")]
    [InlineData("-b base.raw -F raw")]
    [InlineData("-b base.qed -F qed -o compat=0.10")]
    [InlineData("-u -b missing.qcow2 -F qcow2 -o refcount_bits=8")] // the backing file need not exist without --backing-chain
    public void AgreesOnImagesQemuImgMade(string options)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "base.raw", "3M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "base.qed", "3M"));
        Tool.Ok(dir.QemuImg(["create", "-q", "-f", "qcow2", .. options.Split(' ', StringSplitOptions.RemoveEmptyEntries), "x.qcow2", "3M"]));
        if (options.Contains("missing"))
        {
            foreach (string[] extra in new[] { Array.Empty<string>(), ["--output=json"] })
                Assert.Equal(Qcow2CreateInteropTests.WithoutDiskSize(Tool.Ok(dir.QemuImg(["info", .. extra, "x.qcow2"])).StdOut),
                    Qcow2CreateInteropTests.WithoutDiskSize(Tool.Ok(dir.Qed(["info", .. extra, "x.qcow2"])).StdOut));
            return;
        }
        Qcow2CreateInteropTests.AssertInfoAgrees(dir, "x.qcow2");
    }

    /// <summary>qcow2 over QED over raw, in subfolders with relative names, then QED over qcow2 over qcow2; each layer's
    /// backing name, actual path and format as qemu-img shows them.</summary>
    [Fact]
    public void AgreesAlongMixedChains()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["a/b"]);
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "raw", "base.raw", "2M"));
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qed", "-b", "../base.raw", "-F", "raw", "a/mid.qed"));
        Tool.Ok(dir.Qed("create", "-q", "-f", "qcow2", "-o", "refcount_bits=4", "-b", "../mid.qed", "-F", "qed", "a/b/top.qcow2"));
        Tool.Ok(dir.QemuIo("-c", "write -P 1 0 64k", "a/b/top.qcow2"));
        Qcow2CreateInteropTests.AssertInfoAgrees(dir, "a/b/top.qcow2");

        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "low.qcow2", "2M"));
        Tool.Ok(dir.Qed("create", "-q", "-f", "qcow2", "-b", "low.qcow2", "-F", "qcow2", "-o", "lazy_refcounts=on", "high.qcow2"));
        Tool.Ok(dir.Qed("create", "-q", "-f", "qed", "-b", "high.qcow2", "-F", "qcow2", "over.qed"));
        Qcow2CreateInteropTests.AssertInfoAgrees(dir, "over.qed");
        Qcow2CreateInteropTests.AssertInfoAgrees(dir, dir["over.qed"]); // absolute names too
    }

    /// <summary>The dirty bit (qemu-img's "cleanly shut down: no" and "dirty-flag": true) and the corrupt bit, read without changing the file.</summary>
    [Theory]
    [InlineData(1)] // dirty
    [InlineData(2)] // corrupt
    [InlineData(3)]
    public void ShowsTheDirtyAndCorruptBitsAsQemuImgDoes(byte bits)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2", "-u", "x.qcow2", "1M"));
        using (var file = new FileStream(dir["x.qcow2"], FileMode.Open, FileAccess.Write))
        {
            file.Position = 79; // the low byte of the big-endian incompatible_features
            file.WriteByte(bits);
        }
        string before = dir.Hash("x.qcow2");
        foreach (string[] extra in new[] { Array.Empty<string>(), ["--output=json"] })
            Assert.Equal(Qcow2CreateInteropTests.WithoutDiskSize(Tool.Ok(dir.QemuImg(["info", "-U", .. extra, "x.qcow2"])).StdOut),
                Qcow2CreateInteropTests.WithoutDiskSize(Tool.Ok(dir.Qed(["info", "-U", .. extra, "x.qcow2"])).StdOut));
        Assert.Equal(before, dir.Hash("x.qcow2"));
    }
}
