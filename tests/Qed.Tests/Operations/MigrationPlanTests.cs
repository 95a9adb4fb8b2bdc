using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.Operations.Migration;

namespace Qed.Tests.Operations;

/// <summary>
/// <see cref="MigrationPlan"/>: images found by header, chains resolved with QEMU's backing-name rule and ordered
/// bottom-up, targets at the same relative path with the extension replaced, backing files of other formats brought
/// along, --flatten and raw targets standalone, and problems (a missing backing file, an unreadable header) as steps.
/// </summary>
public sealed class MigrationPlanTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-migrate-plan-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private async Task QedAsync(string name, string? backing = null, string? backingFormat = null, long size = 1 << 20)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(P(name))!);
        await QedImage.CreateAsync(P(name), new QedCreateOptions { Size = size, BackingFile = backing, BackingFormat = ImageFormatNames.FromName(backingFormat), BackingCheck = BackingFileCheck.None });
    }

    private async Task<MigrationPlan> PlanAsync(MigrationOptions? options = null, params string[] sources) =>
        await MigrationPlan.CreateAsync(sources.Length == 0 ? [P("vault")] : sources.Select(P).ToArray(), P("out"), options);

    [Fact]
    public async Task ChainsRunBottomUpWithRelativeBackingNames()
    {
        await QedAsync("vault/a/base.qed");
        await QedAsync("vault/a/sub/mid.qed", "../base.qed", "qed");
        await QedAsync("vault/a/sub/top.qed", "mid.qed", "qed");
        var plan = await PlanAsync();
        Assert.Equal(["vault/a/base.qed", "vault/a/sub/mid.qed", "vault/a/sub/top.qed"], plan.Steps.Select(s => Path.GetRelativePath(_dir, s.Source)));
        Assert.Equal(["out/a/base.qcow2", "out/a/sub/mid.qcow2", "out/a/sub/top.qcow2"], plan.Steps.Select(s => Path.GetRelativePath(_dir, s.Target)));
        Assert.Equal([null, "../base.qcow2", "mid.qcow2"], plan.Steps.Select(s => s.TargetBackingName));
        Assert.Same(plan.Steps[1], plan.Steps[2].Backing);
        Assert.Equal([P("vault/a/sub/top.qed"), P("vault/a/sub/mid.qed"), P("vault/a/base.qed")], plan.Steps[2].SourceChain);
        Assert.All(plan.Steps, s => Assert.Null(s.Problem));
    }

    [Fact]
    public async Task ImagesAreFoundByHeaderNotByName()
    {
        await QedAsync("vault/disk.img");
        Directory.CreateDirectory(P("vault"));
        await File.WriteAllBytesAsync(P("vault/fake.qed"), new byte[4096]);
        var plan = await PlanAsync();
        var step = Assert.Single(plan.Steps);
        Assert.Equal(P("vault/disk.img"), step.Source);
        Assert.Equal(P("out/disk.qcow2"), step.Target);
    }

    [Fact]
    public async Task BackingFilesOfOtherFormatsAreBroughtAlongUnlessFlat()
    {
        Directory.CreateDirectory(P("vault"));
        await RawImage.CreateAsync(P("vault/base.raw"), 1 << 20);
        await QedAsync("vault/over.qed", "base.raw", "raw");
        var plan = await PlanAsync();
        Assert.Equal(2, plan.Steps.Count);
        Assert.True(plan.Steps[0].BroughtAlong);
        Assert.Equal((ImageFormat.Raw, P("out/base.raw")), (plan.Steps[0].TargetFormat, plan.Steps[0].Target));
        Assert.Equal("base.raw", plan.Steps[1].TargetBackingName);

        foreach (var options in new[] { new MigrationOptions { Flatten = true }, new MigrationOptions { TargetFormat = ImageFormat.Raw } })
        {
            var flat = await PlanAsync(options);
            var only = Assert.Single(flat.Steps);
            Assert.Null(only.Backing);
            Assert.Equal(P("vault/over.qed"), only.Source);
        }
    }

    [Fact]
    public async Task ABackingFileOutsideTheSourcesGoesWhereItsOverlayNamesIt()
    {
        await QedAsync("shared/base.qed");
        await QedAsync("vault/top.qed", "../shared/base.qed", "qed");
        var plan = await PlanAsync(null, "vault");
        Assert.Equal([P("out/backing-files/base.qcow2"), P("out/top.qcow2")], plan.Steps.Select(s => s.Target));
        Assert.Equal("backing-files/base.qcow2", plan.Steps[1].TargetBackingName);
    }

    [Fact]
    public async Task ProblemsAreStepsNotExceptions()
    {
        await QedAsync("vault/orphan.qed", "gone.qed", "qed");
        await QedAsync("vault/broken.qed");
        using (var f = new FileStream(P("vault/broken.qed"), FileMode.Open)) { f.Position = 4; f.Write(new byte[4]); } // cluster size 0
        var plan = await PlanAsync();
        var orphan = plan.Steps.Single(s => s.Source == P("vault/orphan.qed"));
        Assert.Contains("does not exist", orphan.Problem);
        Assert.False(orphan.Corrupt);
        var broken = plan.Steps.Single(s => s.Source == P("vault/broken.qed"));
        Assert.NotNull(broken.Problem);
        Assert.True(broken.Corrupt);
    }

    [Fact]
    public async Task BadSourcesAreRefusedBeforeAnythingIsWritten()
    {
        Directory.CreateDirectory(P("vault"));
        await RawImage.CreateAsync(P("vault/x.raw"), 4096);
        await Assert.ThrowsAsync<FileNotFoundException>(() => PlanAsync(null, "nowhere"));
        var notQed = await Assert.ThrowsAsync<ArgumentException>(() => PlanAsync(null, "vault/x.raw"));
        Assert.Contains("is not a QED image", notQed.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => PlanAsync(new MigrationOptions { TargetFormat = ImageFormat.Qed }));
        Assert.False(Directory.Exists(P("out")));
    }
}
