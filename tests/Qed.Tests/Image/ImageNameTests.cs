namespace Qed.Tests.Image;

/// <summary>The parser of image names (json:, file:, blkdebug:, option strings): the node trees and qemu's refusals.</summary>
public class ImageNameTests
{
    [Fact]
    public void PlainPathsAreNotSpecial()
    {
        Assert.Null(ImageName.TryParse("/tmp/a:b.qed"));
        Assert.Null(ImageName.TryParse("top.qed"));
    }

    [Fact]
    public void JsonWithSingleQuotesNamesFormatAndFile()
    {
        var name = ImageName.TryParse("json:{'driver':'qed','file':{'driver':'file','filename':'/x/t.qed'}}")!;
        Assert.Equal("qed", name.Format);
        Assert.Equal("/x/t.qed", name.HostFile);
        Assert.Equal("/x/t.qed", name.PlainName);
        Assert.Equal("file", name.Storage.Driver);
    }

    [Fact]
    public void BlkdebugRulesAreRead()
    {
        var name = ImageName.TryParse("json:{'driver':'qed','file':{'driver':'blkdebug','inject-error':[{'event':'write_aio','errno':28,'once':true}]," +
                                      "'image':{'driver':'file','filename':'b.qed'}}}")!;
        var debug = name.Storage;
        Assert.Equal("blkdebug", debug.Driver);
        Assert.Equal(new InjectedError("write_aio", 28, true, null), Assert.Single(debug.Errors));
        Assert.Equal("No space left on device", debug.Errors[0].Message);
        Assert.Null(name.PlainName); // not reducible to a file: shown as json:
        Assert.Equal("b.qed", name.HostFile);
    }

    [Fact]
    public void OptionStringsNestDottedKeysAndDoubledCommas()
    {
        var name = ImageName.FromOptions("driver=qed,file.driver=qed,file.file.filename=a,,b.qed", null);
        Assert.Equal("qed", name.Format);
        Assert.Equal("qed", name.Storage.Driver);
        Assert.Equal("a,b.qed", name.HostFile);
        Assert.Null(ImageName.FromOptions("file.filename=t.qed", null).Format); // probed
    }

    [Fact]
    public void JsonNameRoundTrips()
    {
        var name = ImageName.FromOptions("driver=qed,file.driver=blkdebug,file.image.filename=t.qed,file.inject-error.0.event=read_aio", null);
        Assert.Equal(name.Storage.Errors, ImageName.TryParse(name.ToJsonName())!.Storage.Errors);
        Assert.Equal(name.HostFile, ImageName.TryParse(name.ToJsonName())!.HostFile);
    }

    [Theory]
    [InlineData("driver=qed,file.filename=t.qed,foo=1", "Block format 'qed' does not support the option 'foo'")]
    [InlineData("driver=qed,file.filename=t.qed,file.foo=1", "Block protocol 'file' doesn't support the option 'foo'")]
    [InlineData("driver=qed", "A block device must be specified for \"file\"")]
    [InlineData("driver=vmdk,file.filename=t", "Unknown driver 'vmdk'")]
    public void UnknownOptionsAreRefusedInQemusWords(string options, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => ImageName.FromOptions(options, null).Storage);
        Assert.Equal(message, e.Message);
    }

    [Theory]
    [InlineData("file:image:top.qed", "base.qed", "./base.qed")]
    [InlineData("json:{'driver':'qed','file':{'driver':'file','filename':'/d/t.qed'}}", "b.qed", "/d/b.qed")]
    [InlineData("/d/t.qed", "json:{'file':'x'}", "json:{'file':'x'}")]
    public void BackingNamesResolveBesideTheHostFile(string image, string backing, string resolved) =>
        Assert.Equal(resolved, ImageName.ResolveBacking(image, backing));

    [Fact]
    public void AColonNameIsShownWithDotSlash() => Assert.Equal("./image:top.qed", ImageName.Display("file:image:top.qed"));
}
