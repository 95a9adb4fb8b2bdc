using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.ImageNames;

/// <summary>
/// The disk size qemu-img info shows for an image whose file is not a plain host file: a format inside a format shows
/// the inner image's size, a quorum its children's summed, and anything on a blkdebug node "unavailable". qed info
/// must show the same, in human and JSON output.
/// </summary>
public class DiskSizeInteropTests
{
    private static readonly Regex DiskSize = new("^(disk size: .*|    \"actual-size\": .*)$", RegexOptions.Multiline);

    [Theory]
    [InlineData("{'driver':'raw','file':{'driver':'qed','file':{'driver':'file','filename':'in.qed'}}}")]
    [InlineData("{'driver':'raw','file':{'driver':'qcow2','file':{'driver':'file','filename':'in.qcow2'}}}")]
    [InlineData("{'driver':'raw','file':{'driver':'raw','file':{'driver':'file','filename':'in.qcow2'}}}")]
    [InlineData("{'driver':'qed','file':{'driver':'blkdebug','image':{'driver':'file','filename':'in.qed'}}}")]
    [InlineData("{'driver':'qed','file':{'driver':'quorum','vote-threshold':1,'children':[" +
                "{'driver':'file','filename':'in.qed'},{'driver':'file','filename':'copy.qed'}]}}")]
    [InlineData("{'driver':'qed','file':{'driver':'quorum','vote-threshold':1,'children':[" +
                "{'driver':'file','filename':'in.qed'},{'driver':'blkdebug','image':{'driver':'file','filename':'copy.qed'}}]}}")]
    public void DiskSizeMatchesQemuImg(string node)
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "in.qed", "64M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 7 0 1M", "in.qed"));
        Tool.Ok(dir.QemuImg("create", "-f", "qcow2", "in.qcow2", "64M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 7 0 2M", "in.qcow2"));
        File.Copy(dir["in.qed"], dir["copy.qed"]);
        string name = "json:" + node;
        foreach (string output in new[] { "human", "json" })
        {
            var qemu = dir.QemuImg("info", "--output", output, name);
            var qed = dir.Qed("info", "--output", output, name);
            Assert.Equal(0, qemu.ExitCode);
            Assert.Equal(0, qed.ExitCode);
            string expected = DiskSize.Match(qemu.StdOut).Value;
            Assert.Equal(expected, DiskSize.Match(qed.StdOut).Value);
        }
    }
}
