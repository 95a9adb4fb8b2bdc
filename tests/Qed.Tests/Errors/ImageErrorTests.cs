using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Storage;
using Qed.Tests.Formats.Qcow2;
using Qed.Tests.Hostile;

namespace Qed.Tests.Errors;

/// <summary>
/// The exception types of the public API: an <see cref="ImageFormatException"/> names the file at fault (a corrupt
/// backing file, not the image on top), the field and its offset, whether it is met at open or by a request; a write
/// refused until a check is an <see cref="ImageNeedsCheckException"/>, a kind of format error and not of
/// <see cref="InvalidOperationException"/>, which stays the read-only refusal (errno EIO and EPERM apart).
/// </summary>
public sealed class ImageErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-errors").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>base.qed under top.qed, then base.qed's cluster_size (header offset 4) set to a value no image has.</summary>
    private async Task CorruptBaseUnderTopAsync()
    {
        await QedImage.CreateAsync(PathOf("base.qed"), new QedCreateOptions { Size = 1 << 20 });
        await QedImage.CreateAsync(PathOf("top.qed"), new QedCreateOptions { Size = 1 << 20, BackingFile = "base.qed", BackingFormat = ImageFormat.Qed });
        await using var file = new FileStream(PathOf("base.qed"), FileMode.Open);
        file.Position = 4;
        file.Write([0x00, 0x30, 0x00, 0x00]); // 12288: not a power of 2
    }

    [Fact]
    public async Task ACorruptBackingFileIsNamedAsTheFileAtFaultNotTheImageOnTop()
    {
        await CorruptBaseUnderTopAsync();
        var e = await Assert.ThrowsAsync<ImageFormatException>(() => DiskImage.OpenAsync(PathOf("top.qed")));
        Assert.Equal(PathOf("base.qed"), Path.GetFullPath(e.FileName!));
        Assert.Equal("cluster_size", e.Field);
        Assert.Equal(4, e.FileOffset);

        var direct = await Assert.ThrowsAsync<ImageFormatException>(() => DiskImage.OpenAsync(PathOf("base.qed")));
        Assert.Equal(PathOf("base.qed"), direct.FileName);
    }

    [Fact]
    public async Task ACorruptImageOpenedByPathIsNamed()
    {
        await QedImage.CreateAsync(PathOf("a.qed"), new QedCreateOptions { Size = 1 << 20 });
        var bytes = await File.ReadAllBytesAsync(PathOf("a.qed"));
        SampleImages.Poke32(bytes, 4, 12288);
        await File.WriteAllBytesAsync(PathOf("a.qed"), bytes);
        var e = await Assert.ThrowsAsync<ImageFormatException>(() => DiskImage.OpenAsync(PathOf("a.qed")));
        Assert.Equal(PathOf("a.qed"), e.FileName);
        Assert.Equal("cluster_size", e.Field);
    }

    [Fact]
    public async Task ACorruptQedEntryFailsTheRequestNamingTheFileAndThenWritesNeedACheck()
    {
        var bytes = await SampleImages.TwoTablesAsync();
        long entry = SampleImages.L2Entry(bytes, 0, 0);
        SampleImages.Poke(bytes, entry, 20481); // not cluster aligned
        await File.WriteAllBytesAsync(PathOf("a.qed"), bytes);
        await using var image = await DiskImage.OpenAsync(PathOf("a.qed"));

        var read = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.ReadAsync(0, new byte[4096]));
        Assert.Equal(PathOf("a.qed"), read.FileName);
        Assert.Equal("L2[0][0]", read.Field);
        Assert.Equal(entry, read.FileOffset);

        var refused = await Assert.ThrowsAsync<ImageNeedsCheckException>(async () => await image.WriteAsync(1 << 20, new byte[4096]));
        Assert.IsAssignableFrom<ImageFormatException>(refused);
        Assert.IsNotAssignableFrom<InvalidOperationException>(refused);
        Assert.Equal(PathOf("a.qed"), refused.FileName);
        Assert.Equal("L2[0][0]", refused.Field); // the corruption that caused it
        Assert.Same(read, refused.InnerException);
    }

    [Fact]
    public async Task AWriteToAReadOnlyImageIsAnInvalidOperationNotAFormatError()
    {
        await QedImage.CreateAsync(PathOf("a.qed"), new QedCreateOptions { Size = 1 << 20 });
        await using var image = await DiskImage.OpenAsync(PathOf("a.qed"), new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAsync<InvalidOperationException>(async () => await image.WriteAsync(0, new byte[512]));
        Assert.IsNotAssignableFrom<ImageFormatException>(e);
    }

    [Fact]
    public async Task AQcow2EntryErrorRaisedWithoutANameGetsTheImagesNameAtTheRequestBoundary()
    {
        // The L2 lookup that meets the entry does not know the file; Qcow2Image's request methods attach it.
        var s = new MemoryStorage("corrupt.qcow2");
        await Qcow2Image.CreateAsync(s, new Qcow2CreateOptions { Size = 64L << 20 });
        await using (var image = await Qcow2Image.OpenAsync(s))
            await image.WriteAsync(0, SampleImages.Filled(65536, 0x11));
        long l1 = (long)await Qcow2Components.U64Async(s, 40);
        long entry0 = (long)(await Qcow2Components.U64Async(s, l1) & Qcow2Entries.OffsetMask);
        await Qcow2Components.PutU64Async(s, entry0, 1UL << 30 | Qcow2Entries.CopiedFlag); // past the end of the file

        await using var opened = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var read = await Assert.ThrowsAsync<ImageFormatException>(async () => await opened.ReadAsync(0, new byte[4096]));
        Assert.Equal("corrupt.qcow2", read.FileName);
        Assert.Equal("L2[0][0]", read.Field);
        Assert.Contains(nameof(Qcow2Image), read.StackTrace); // rethrown as thrown: the original stack is kept
        var extent = await Assert.ThrowsAsync<ImageFormatException>(async () => await opened.GetLayerExtentAsync(0, 65536));
        Assert.Equal("corrupt.qcow2", extent.FileName);
    }

    [Fact]
    public void TheFileNameGoesOnOnlyWhereNoneIsSet()
    {
        var e = new ImageFormatException("bad", "inner.qed", "magic", 0);
        Assert.False(e.AttachFileName("outer.qed"));
        Assert.Equal("inner.qed", e.FileName);
        var unnamed = new ImageFormatException("bad");
        Assert.False(unnamed.AttachFileName("outer.qed"));
        Assert.Equal("outer.qed", unnamed.FileName);
    }

    [Fact]
    public void ALockConflictNamesTheLockedFile()
    {
        var e = new ImageLockedException("/images/base.qed", "Failed to get \"write\" lock", "/images/top.qed");
        Assert.IsAssignableFrom<IOException>(e);
        Assert.Equal("/images/base.qed", e.FileName);
        Assert.Equal("Could not open '/images/top.qed': Failed to get \"write\" lock", e.Message);
    }
}

/// <summary>The library's messages name the API to repair with; the qed tool puts back the commands it printed before.</summary>
public sealed class RepairAdviceTests
{
    [Theory]
    [InlineData(RepairAdvice.NeedsRepair, "needs 'qed check -r all'")]
    [InlineData(RepairAdvice.RepairIt, "repair it with 'qemu-img check -r all'")]
    [InlineData(RepairAdvice.RebuildRefcounts, "('qemu-img check -r all')")]
    [InlineData(RepairAdvice.SeeCheck, "(see 'qemu-img check')")]
    public void TheToolKeepsItsWords(string api, string tool)
    {
        Assert.Contains("ImageFile.CheckAsync", api);
        Assert.Equal($"'a.qed' is bad; the image 'a.qed' {tool}", RepairAdvice.ForTool($"'a.qed' is bad; the image 'a.qed' {api}"));
    }

    [Fact]
    public async Task TheLibrarysCorruptionMessageNamesTheApi()
    {
        var bytes = await SampleImages.TwoTablesAsync();
        SampleImages.Poke(bytes, SampleImages.L2Entry(bytes, 0, 0), 20481);
        await using var image = await QedImage.OpenAsync(new MemoryStorage(bytes, "a.qed"));
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await image.ReadAsync(0, new byte[4096]));
        Assert.EndsWith("the image 'a.qed' needs repairing with ImageFile.CheckAsync and CheckRepair.All", e.Message);
        Assert.DoesNotContain("qed check", e.Message);
        Assert.EndsWith("the image 'a.qed' needs 'qed check -r all'", RepairAdvice.ForTool(e.Message));
    }
}
