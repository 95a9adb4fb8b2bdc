namespace Qed.Interop.Tests.Support;

/// <summary>Images with data, zero and backing ranges, made by qemu-img and qemu-io, for info and map comparisons.</summary>
public static class SampleImages
{
    /// <summary>The names <see cref="Make"/> accepts.</summary>
    public static readonly string[] Names = ["plain", "data-zero-raw-backing", "qed-backing", "short-backing-subdir", "zero-byte", "raw", "small-clusters"];

    /// <summary>Makes the named sample in <paramref name="dir"/> and returns the path to pass to info/map (relative).</summary>
    public static string Make(TempDir dir, string name)
    {
        switch (name)
        {
            case "plain":
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "16M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 1 0 100k", "-c", "write -z 1M 1M", "-c", "write -P 2 5M 64k", "-c", "write -P 3 15M 1M", "img.qed"));
                return "img.qed";
            case "data-zero-raw-backing":
                Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "3M"));
                Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x55 0 1M", "-c", "write -P 0x56 2M 4k", "base.raw"));
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.raw", "-F", "raw", "img.qed", "4M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 1 64k 64k", "-c", "write -z 1M 128k", "-c", "write -P 2 3M 4k", "img.qed"));
                return "img.qed";
            case "qed-backing":
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "4M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 0x55 0 2M", "-c", "write -z 3M 64k", "base.qed"));
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "img.qed"));
                Tool.Ok(dir.QemuIo("-c", "write -P 1 1M 64k", "-c", "write -z 1536k 64k", "img.qed"));
                return "img.qed";
            case "short-backing-subdir":
                Directory.CreateDirectory(dir["sub"]);
                Tool.Ok(dir.QemuImg("create", "-f", "raw", "base.raw", "1537k"));
                Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 0x77 0 1537k", "base.raw"));
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "../base.raw", "-F", "raw", "sub/img.qed", "4M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 1 3M 4k", "sub/img.qed"));
                return "sub/img.qed";
            case "zero-byte":
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "img.qed", "0"));
                return "img.qed";
            case "raw":
                Tool.Ok(dir.QemuImg("create", "-f", "raw", "img.raw", "2M"));
                Tool.Ok(dir.QemuIo("-f", "raw", "-c", "write -P 9 64k 64k", "img.raw"));
                return "img.raw";
            case "small-clusters":
                Tool.Ok(dir.QemuImg("create", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "img.qed", "16M"));
                Tool.Ok(dir.QemuIo("-c", "write -P 1 4190000 10000", "-c", "write -z 8M 8k", "-c", "write -P 2 8200k 4k", "img.qed"));
                return "img.qed";
            default:
                throw new ArgumentException(name);
        }
    }
}
