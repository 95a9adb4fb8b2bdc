using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Storage;

/// <summary>
/// blkdebug rules as <see cref="FaultInjectingStorage"/> applies them: the request kinds (iotype), event <c>none</c>
/// (always active; without an iotype every kind but flush and block-status, as observed on qemu 7.2), the sector
/// filter over a request's whole range, <c>once</c>, and how rules are read from a json: name.
/// </summary>
public class FaultInjectingStorageTests
{
    private static FaultInjectingStorage Over(params InjectedError[] rules) => new(new MemoryStorage(new byte[1 << 20]), rules);

    private static InjectedError None(long? sector, InjectedIoType? type = null, bool once = false) =>
        new("none", InjectedError.EIO, once, sector) { IoType = type };

    [Fact]
    public async Task BlockStatusRulesFailQueriesWhoseRangeCoversTheSector()
    {
        using var storage = Over(None(100, InjectedIoType.BlockStatus));
        var e = await Assert.ThrowsAsync<IOException>(async () => await storage.GetAllocationAsync(0, 1 << 20));
        Assert.Equal("Input/output error", e.Message);
        await Assert.ThrowsAsync<IOException>(async () => await storage.GetAllocationAsync(100 * 512 + 511, 1));
        await storage.GetAllocationAsync(0, 100 * 512);       // ends just before the sector
        await storage.GetAllocationAsync(101 * 512, 4096);    // starts just after it
        await storage.ReadAsync(100 * 512, new byte[512]);    // a read is not a block-status request
    }

    [Fact]
    public async Task EventNoneWithoutIoTypeFailsDataRequestsButNotFlushOrBlockStatus()
    {
        using var storage = Over(None(8));
        await Assert.ThrowsAsync<IOException>(async () => await storage.ReadAsync(0, new byte[8192]));
        await Assert.ThrowsAsync<IOException>(async () => await storage.WriteAsync(4096, new byte[512]));
        await Assert.ThrowsAsync<IOException>(async () => await storage.ZeroRangeAsync(4096, 512));
        await storage.FlushAsync();
        await storage.GetAllocationAsync(0, 1 << 20);
        await storage.ReadAsync(0, new byte[4096]);
    }

    [Theory]
    [InlineData((int)InjectedIoType.Read)]
    [InlineData((int)InjectedIoType.Write)]
    [InlineData((int)InjectedIoType.WriteZeroes)]
    [InlineData((int)InjectedIoType.Flush)]
    public async Task AnIoTypeRuleFailsOnlyThatKind(int typeValue) // an int: InjectedIoType is internal, a public test cannot take it
    {
        var type = (InjectedIoType)typeValue;
        using var storage = Over(None(0, type));
        var calls = new (InjectedIoType Kind, Func<ValueTask> Call)[]
        {
            (InjectedIoType.Read, () => storage.ReadAsync(0, new byte[512])),
            (InjectedIoType.Write, () => storage.WriteAsync(0, new byte[512])),
            (InjectedIoType.WriteZeroes, () => storage.ZeroRangeAsync(0, 512)),
            (InjectedIoType.Flush, () => storage.FlushAsync()),
            (InjectedIoType.BlockStatus, async () => await storage.GetAllocationAsync(0, 512)),
        };
        foreach (var (kind, call) in calls)
        {
            if (kind == type) await Assert.ThrowsAsync<IOException>(async () => await call());
            else await call();
        }
    }

    [Fact]
    public async Task OnceRulesAreSpentByTheirFirstFailure()
    {
        using var storage = Over(None(null, InjectedIoType.BlockStatus, once: true));
        await Assert.ThrowsAsync<IOException>(async () => await storage.GetAllocationAsync(0, 512));
        await storage.GetAllocationAsync(0, 512);
    }

    [Fact]
    public void JsonRulesReadIoTypeEventNoneAndSectorsAndRoundTrip()
    {
        var name = ImageName.TryParse("json:{'driver':'blkdebug','image':{'driver':'qed','file':{'driver':'file','filename':'t.qed'}}," +
                                      "'inject-error':[{'event':'none','iotype':'block-status','errno':5,'sector':32784}," +
                                      "{'event':'none','sector':-1}]}")!;
        Assert.Equal([None(32784, InjectedIoType.BlockStatus), None(null)], name.Errors);
        Assert.Equal(name.Errors, ImageName.TryParse(name.ToJsonName())!.Errors);
    }

    [Theory]
    [InlineData("{'event':'none','iotype':'bogus'}", "invalid parameter value: bogus")] // qemu's words
    [InlineData("{'event':'l2_load'}", "Invalid parameter 'l2_load' (events supported here: none, read_aio, write_aio)")]
    [InlineData("{'event':'none','sector':'x'}", "Parameter 'sector' expects a number")]
    public void BadRulesAreRefusedNamingTheValue(string rule, string message)
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ImageName.TryParse($"json:{{'driver':'blkdebug','image':{{'driver':'qed','file':{{'driver':'file','filename':'t.qed'}}}},'inject-error':[{rule}]}}"));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public async Task BlkdebugOverAFormatIsReadAsRawWithoutAProbe()
    {
        // Sector 0 fails every read: a probe would fail the open; the filter's contents are the image's, read as raw.
        string dir = Directory.CreateTempSubdirectory("qed-blkdebug-").FullName;
        try
        {
            string path = Path.Combine(dir, "t.qed");
            await QedImage.CreateAsync(path, new QedCreateOptions { Size = 1 << 20 });
            await using (var written = await DiskImage.OpenAsync(path)) await written.WriteAsync(4096, new byte[] { 7 });
            await using var image = await DiskImage.OpenAsync(
                $"json:{{'driver':'blkdebug','image':{{'driver':'qed','file':{{'driver':'file','filename':'{path}'}}}},'inject-error':[{{'event':'none','iotype':'read','sector':0}}]}}",
                new ImageOpenOptions { ReadOnly = true });
            Assert.Equal(ImageFormat.Raw, image.Format);
            Assert.Equal(1 << 20, image.Size);
            var one = new byte[1];
            await image.ReadAsync(4096, one);
            Assert.Equal(7, one[0]);
            await Assert.ThrowsAsync<IOException>(async () => await image.ReadAsync(0, new byte[512]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
