using System.Text;
using Qed.Formats.Qed;

namespace Qed.Tests.Formats.Qed;

public class HeaderWriterTests
{
    private static (EngineFixture F, HeaderWriter Writer) Setup(QedHeader header, string? name)
    {
        var f = new EngineFixture();
        var bytes = new byte[4096];
        header.WriteTo(bytes);
        if (name != null) Encoding.UTF8.GetBytes(name).CopyTo(bytes, header.BackingFilenameOffset);
        f.Memory.WriteAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        f.File.ClearLog();
        return (f, new HeaderWriter(f.File, header, name));
    }

    private static (QedHeader Header, string? Name) OnDisk(EngineFixture f)
    {
        var bytes = new byte[4096];
        f.Memory.ReadAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        var header = QedHeader.Parse(bytes);
        string? name = header.HasBackingFile ? Encoding.UTF8.GetString(bytes, (int)header.BackingFilenameOffset, (int)header.BackingFilenameSize) : null;
        return (header, name);
    }

    private static QedHeader Backed(string name, uint at = 64) => EngineFixture.NewHeader(QedFeatures.BackingFile) with
    {
        BackingFilenameOffset = at,
        BackingFilenameSize = (uint)Encoding.UTF8.GetByteCount(name),
    };

    [Fact]
    public async Task SizeAndNeedCheckAreSyncedBeforeTheyAreReported()
    {
        var (f, writer) = Setup(EngineFixture.NewHeader(), null);
        await writer.WriteSizeAsync(1L << 20);
        Assert.Equal(["W 0 64", "F"], f.File.Log);
        Assert.Equal(1UL << 20, writer.Current.ImageSize);
        Assert.Equal(1UL << 20, OnDisk(f).Header.ImageSize);
        await writer.SetNeedCheckAsync(true);
        Assert.True(OnDisk(f).Header.NeedsCheck);
        f.File.ClearLog();
        await writer.SetNeedCheckAsync(false);
        Assert.Equal(["F", "W 0 64", "F"], f.File.Log);
        Assert.False(writer.Current.NeedsCheck);
        Assert.Equal(1UL << 20, OnDisk(f).Header.ImageSize); // other fields kept
    }

    [Fact]
    public async Task ABackingSwitchInTheFirstSectorIsOneWrite()
    {
        var (f, writer) = Setup(Backed("old-base.qcow2"), "old-base.qcow2");
        await writer.SwitchBackingAsync("b.raw", "raw", CancellationToken.None);
        Assert.Equal(["W 0 78", "F"], f.File.Log); // header, new name, zeroes over the old name's tail
        var (header, name) = OnDisk(f);
        Assert.Equal("b.raw", name);
        Assert.True((header.Features & QedFeatures.BackingFormatNoProbe) != 0);
        Assert.Equal("b.raw", writer.BackingName);
        var bytes = new byte[14];
        await f.Memory.ReadAsync(64 + 5, bytes);
        Assert.All(bytes[..9], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task ALongNameGoesBesideTheOldOneSoEveryStepLeavesOneChain()
    {
        string oldName = new('o', 600), newName = new('n', 700);
        var (f, writer) = Setup(Backed(oldName), oldName);
        await writer.SwitchBackingAsync(newName, null, CancellationToken.None);
        Assert.Equal([$"W {64 + 600} 700", "F", "W 0 64", "F", "W 64 600", "F"], f.File.Log);
        var (header, name) = OnDisk(f);
        Assert.Equal(newName, name);
        Assert.Equal(664u, header.BackingFilenameOffset);
    }

    [Fact]
    public async Task DetachingClearsTheBackingFieldsAndTheName()
    {
        var (f, writer) = Setup(Backed("base.raw") with { Features = QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe }, "base.raw");
        await writer.SwitchBackingAsync(null, null, CancellationToken.None);
        var (header, name) = OnDisk(f);
        Assert.Null(name);
        Assert.Equal(QedFeatures.None, header.Features);
        Assert.Equal(0u, header.BackingFilenameSize);
        Assert.Null(writer.BackingName);
        Assert.Equal(0UL, f.ReadU64(64));
    }

    [Fact]
    public void BackingChangesThisProgramCannotWriteSafelyAreRefused()
    {
        var (_, writer) = Setup(EngineFixture.NewHeader() with { CompatFeatures = 4 }, null);
        Assert.Throws<NotSupportedException>(() => writer.ValidateBackingChange("x", "img"));
        var (_, plain) = Setup(EngineFixture.NewHeader(), null);
        plain.ValidateBackingChange("x", "img");
        plain.ValidateBackingChange(null, "img");
        Assert.Contains("has room for 4032", Assert.Throws<ArgumentException>(() => plain.ValidateBackingChange(new string('x', 4033), "img")).Message);
        Assert.Throws<ArgumentException>(() => plain.ValidateBackingChange("", "img"));
    }
}
