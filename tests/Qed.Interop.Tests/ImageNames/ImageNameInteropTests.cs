using System.Text.RegularExpressions;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.ImageNames;

/// <summary>
/// Image names beyond a plain path (json:{...}, file:, blkdebug:, --image-opts option strings) open the same images
/// and fail with the same words and exit codes in qed as in qemu-img and qemu-io.
/// </summary>
public class ImageNameInteropTests
{
    private static readonly Regex Prefix = new("^(qed|qemu-img|qemu-io): ", RegexOptions.Multiline);
    private static readonly Regex Timing = new("^.* ops; .*$", RegexOptions.Multiline);

    /// <summary>Output with the tool's name and timings taken out: what must be equal between the two tools.</summary>
    private static string Same(ToolResult r) => $"exit {r.ExitCode}\n{Timing.Replace(r.StdOut, "T")}\n{Prefix.Replace(r.StdErr, "")}";

    private static TempDir Images()
    {
        var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "1M"));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 7 0 64k", "top.qed"));
        return dir;
    }

    [Theory]
    [InlineData("json:{'driver':'qed','file':{'driver':'file','filename':'top.qed'}}")]
    [InlineData("json:{\"driver\": \"qed\", \"file\": \"top.qed\"}")]
    [InlineData("json:{'file':{'driver':'file','filename':'top.qed'}}")]                 // format probed
    [InlineData("json:{'driver':'qed','file':{'driver':'file','filename':'top.qed','bar':1}}")]
    [InlineData("json:{'driver':'qed','file':{'driver':'file','filename':'top.qed'},'foo':1}")]
    [InlineData("json:{'driver':'nope','file':'top.qed'}")]
    [InlineData("json:{'driver':'qed','file':{'driver':'file','filename':'missing.qed'}}")]
    [InlineData("json:{'driver':'qed','file':{'driver':'blkdebug','image':{'driver':'file','filename':'top.qed'},'zz':1}}")]
    [InlineData("file:top.qed")]
    public void InfoOnANameMatchesQemuImg(string name)
    {
        using var dir = Images();
        Assert.Equal(Same(dir.QemuImg("info", name)), Same(dir.Qed("info", name)));
    }

    [Theory]
    [InlineData("driver=qed,file.driver=file,file.filename=top.qed")]
    [InlineData("driver=qed,file.filename=top.qed")]
    [InlineData("file.filename=top.qed")]
    [InlineData("driver=qed,file.filename=top.qed,foo=1")]
    [InlineData("driver=qed,file.filename=top.qed,file.foo=1")]
    [InlineData("driver=qed")]
    [InlineData("driver=qed,file.filename=missing.qed")]
    public void InfoWithImageOptsMatchesQemuImg(string options)
    {
        using var dir = Images();
        Assert.Equal(Same(dir.QemuImg("info", "--backing-chain", "--image-opts", options)),
            Same(dir.Qed("info", "--backing-chain", "--image-opts", options)));
    }

    /// <summary>
    /// Every qemu-img command that takes --image-opts takes it in qed too, with the same output and exit code; each
    /// tool runs in its own fresh folder (resize and amend change the image) and the images must end up equal.
    /// </summary>
    [Theory]
    [InlineData("map --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("map --output=json --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("check --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("check --output=json --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("compare --image-opts driver=qed,file.filename=top.qed driver=qed,file.filename=base.qed")]
    [InlineData("compare --image-opts driver=qed,file.filename=top.qed driver=raw,file.filename=top.qed")]
    [InlineData("measure -O qcow2 --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("resize --image-opts driver=qed,file.filename=top.qed 2M")]
    [InlineData("dd --image-opts if=driver=qed,file.filename=top.qed of=out.raw bs=64k count=2")]
    [InlineData("map -f qed --image-opts driver=qed,file.filename=top.qed")]
    [InlineData("check --image-opts driver=qed,file.filename=missing.qed")]
    public void CommandsTakingImageOptsMatchQemuImg(string arguments)
    {
        string[] args = arguments.Split(' ');
        using var theirs = Images();
        using var ours = Images();
        var expected = theirs.QemuImg(args);
        var actual = ours.Qed(args);
        Assert.Equal(Same(expected).Replace(theirs.Path, "DIR"), Same(actual).Replace(ours.Path, "DIR"));
        Assert.Equal(0, ours.QemuImg("compare", ours["top.qed"], theirs["top.qed"]).ExitCode);
    }

    /// <summary>A json: name that is not JSON is refused in qemu-img's words for each kind of syntax error.</summary>
    [Theory]
    [InlineData("json:{")]
    [InlineData("json:{\"driver\":\"qed\"")]
    [InlineData("json:{x}")]
    [InlineData("json:{\"a\":}")]
    [InlineData("json:{\"a\" 1}")]
    [InlineData("json:{\"a\":1,}")]
    [InlineData("json:")]
    [InlineData("json:{\"a\":tru}")]
    [InlineData("json:{\"a\":\"b}")]
    [InlineData("json:{\"a\":1}}")]
    [InlineData("json:[1,2")]
    public void MalformedJsonNameIsWordedAsQemuImgWordsIt(string name)
    {
        using var dir = Images();
        Assert.Equal(Same(dir.QemuImg("info", name)), Same(dir.Qed("info", name)));
    }

    [Fact]
    public void ImageOptsBesideAFormatIsRefusedAsQemuImgDoes()
    {
        using var dir = Images();
        string[] args = ["info", "-f", "qed", "--image-opts", "driver=qed,file.filename=top.qed"];
        Assert.Equal(Same(dir.QemuImg(args)), Same(dir.Qed(args)));
    }

    [Fact]
    public void BlkdebugNameIsShownWithItsBackingResolvedBesideTheHostFile()
    {
        // qemu shows its own json: rendering for a name it cannot reduce to a file; the rest must match.
        using var dir = Images();
        string name = $"json:{{'driver':'qed','file':{{'driver':'blkdebug','image':{{'driver':'file','filename':'{dir["top.qed"]}'}}," +
                      "'set-state':[{'event':'read_aio','new_state':42}]}}";
        static string NoImageLine(ToolResult r) => Regex.Replace(Same(r), "^image: .*$", "image: X", RegexOptions.Multiline);
        var qed = dir.Qed("info", name);
        Assert.Equal(NoImageLine(dir.QemuImg("info", name)), NoImageLine(qed));
        Assert.Contains($"backing file: base.qed (actual path: {dir["base.qed"]})", qed.StdOut);
    }

    [Theory]
    [InlineData("human")]
    [InlineData("json")]
    public void QuorumOfTwoCopiesHasNoActualBackingPath(string output)
    {
        // As iotest 110: a quorum's children need not share a folder, so a relative backing name cannot be resolved.
        using var dir = Images();
        File.Copy(dir["top.qed"], dir["copy.qed"]);
        string name = "json:{'driver':'qed','file':{'driver':'quorum','vote-threshold':1,'children':[" +
                      "{'driver':'file','filename':'top.qed'},{'driver':'file','filename':'copy.qed'}]}}";
        static string NoImageLine(ToolResult r) =>
            Regex.Replace(Same(r), "^(image: .*|    \"filename\": .*)$", "image: X", RegexOptions.Multiline);
        var qed = dir.Qed("info", "--output", output, name);
        Assert.Equal(NoImageLine(dir.QemuImg("info", "--output", output, name)), NoImageLine(qed));
        if (output == "human") Assert.Contains("backing file: base.qed (cannot determine actual path)", qed.StdOut);
        Assert.Equal(Same(dir.QemuIo("-c", "read -P 7 0 64k", name)), Same(dir.Qed("io", "-c", "read -P 7 0 64k", name)));
    }

    [Fact]
    public void FileProtocolPrefixAllowsColonsInNames()
    {
        using var dir = Images();
        Tool.Ok(dir.Qed("create", "-f", "qed", "file:a:b.qed", "1M"));
        Assert.True(File.Exists(dir["a:b.qed"]));
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "file:c:d.qed"));
        Assert.Equal(Same(dir.QemuImg("info", "file:c:d.qed")), Same(dir.Qed("info", "file:c:d.qed")));
        Assert.Contains("image: ./c:d.qed", dir.Qed("info", "file:c:d.qed").StdOut);
        QemuCheck.AssertClean(dir, dir["a:b.qed"]); // a colon after a slash is no protocol prefix
    }

    [Theory]
    [InlineData("write_aio", 28, true, "write -P 1 0 4k")]
    [InlineData("write_aio", 28, false, "write -P 1 0 4k")]
    [InlineData("read_aio", 5, false, "read -P 7 0 4k")]
    public void BlkdebugInjectedErrorsFailAsInQemuIo(string @event, int errno, bool once, string command)
    {
        using var dir = Images();
        string name = $"json:{{'driver':'raw','file':{{'driver':'blkdebug','inject-error':[{{'event':'{@event}','errno':{errno}," +
                      $"'once':{(once ? "true" : "false")}}}],'image':{{'driver':'file','filename':'top.qed'}}}}}}";
        string[] args = ["-c", command, "-c", command, name];
        Assert.Equal(Same(dir.QemuIo(args)), Same(dir.Qed(["io", .. args])));
    }

    [Fact]
    public void BlkdebugProtocolNameWithAlignOptionOpensTheImage()
    {
        using var dir = Images();
        string[] args = ["-c", "open -o driver=qed,file.align=512 blkdebug::top.qed", "-c", "write -z 0x200 0x400", "-c", "read -P 7 0x600 0x200"];
        var want = dir.QemuIo(args);
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed"));
        Tool.Ok(dir.QemuIo("-c", "write -P 7 0 64k", "top.qed"));
        Assert.Equal(Same(want), Same(dir.Qed(["io", .. args])));
    }

    [Fact]
    public void NestedQedInsideQedIsReadAndWrittenAsQemuIoDoes()
    {
        // As iotest 072: a QED image whose contents are another QED image. Writes stay inside the inner image's
        // allocated cluster (the inner file cannot grow past the outer's virtual size).
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "inner.qed", "1M"));
        Tool.Ok(dir.QemuIo("-c", "write -P 42 0 512", "-c", "write -P 23 4096 512", "inner.qed"));
        Tool.Ok(dir.QemuImg("convert", "-f", "raw", "-O", "qed", "inner.qed", "outer.qed"));
        const string Open = "open -o driver=qed,file.driver=qed,file.file.filename=outer.qed";
        string[] read = ["-c", Open, "-c", "read -P 42 0 512", "-c", "read -P 23 4096 512", "-c", "read -P 0 8192 512"];
        Assert.Equal(Same(dir.QemuIo(read)), Same(dir.Qed(["io", .. read])));
        Assert.DoesNotContain("verification failed", dir.Qed(["io", .. read]).StdOut);

        Tool.Ok(dir.Qed("io", "-c", Open, "-c", "write -P 9 8192 512"));
        var back = Tool.Ok(dir.QemuIo("-c", Open, "-c", "read -P 9 8192 512", "-c", "read -P 42 0 512"));
        Assert.DoesNotContain("verification failed", back.StdOut);
        QemuCheck.AssertClean(dir, "outer.qed");
        Tool.Ok(dir.QemuImg("convert", "-O", "raw", "outer.qed", "inner-again.qed"));
        QemuCheck.AssertClean(dir, "inner-again.qed");
    }

    [Fact]
    public void CommitIntoABlkdebugBackingFailsWithItsErrno()
    {
        using var dir = new TempDir();
        Tool.Ok(dir.QemuImg("create", "-f", "qed", "base.qed", "1M"));
        string backing = $"json:{{'driver': 'qed', 'file': {{'driver': 'blkdebug', 'inject-error': [{{'event': 'write_aio', 'errno': 28, " +
                         $"'once': true}}], 'image': {{'driver': 'file', 'filename': '{dir["base.qed"]}'}}}}}}";
        Tool.Ok(dir.Qed("create", "-f", "qed", "-b", backing, "-F", "qed", "top.qed"));
        Assert.Contains($"backing file: {backing}", Tool.Ok(dir.QemuImg("info", "top.qed")).StdOut);
        Tool.Ok(dir.QemuIo("-c", "write 0 64k", "top.qed"));
        var qemu = dir.QemuImg("commit", "top.qed");
        Tool.Ok(dir.QemuIo("-c", "write 0 64k", "top.qed"));
        var qed = dir.Qed("commit", "top.qed");
        Assert.Equal(qemu.ExitCode, qed.ExitCode);
        Assert.EndsWith("No space left on device", qed.StdErr.Trim());
    }
}
