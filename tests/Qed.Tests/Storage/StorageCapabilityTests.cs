using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>
/// The capabilities every <see cref="IBlockStorage"/> declares (durable writes, host size, inline-read limit) and the
/// growth contract: what a file has, what memory and a test double get by default, and what each wrapper passes
/// through from what it wraps.
/// </summary>
public sealed class StorageCapabilityTests : IDisposable
{
    private readonly ScratchFiles _files = new();

    public void Dispose() => _files.Dispose();

    private static readonly InjectedError[] NoRules = [];

    // ---- FileStorage: the storage the capabilities describe.

    /// <summary>Write-through and direct-sync files promise a completed write is durable (O_DSYNC); the others do not.</summary>
    [Theory]
    [InlineData(CacheMode.WriteBack, false)]
    [InlineData(CacheMode.WriteThrough, true)]
    [InlineData(CacheMode.None, false)]
    [InlineData(CacheMode.DirectSync, true)]
    [InlineData(CacheMode.Unsafe, false)]
    public void AFileIsDurableUnderWriteThroughAndDirectSyncOnly(CacheMode cache, bool durable)
    {
        using IBlockStorage file = _files.Open("f.img", cache);
        Assert.Equal(durable, file.WritesAreDurable);
    }

    /// <summary>A file made by Create is write-back: its writes wait for a flush.</summary>
    [Fact]
    public void ACreatedFileIsNotDurableBeforeAFlush()
    {
        using IBlockStorage file = FileStorage.Create(_files["new.img"]);
        Assert.False(file.WritesAreDurable);
    }

    /// <summary>
    /// Through the interface a file reports its bytes on the host: 64 KiB of data in a 4 MiB sparse file; unavailable
    /// (null) where the host cannot tell holes from data (QED_PORTABLE_IO).
    /// </summary>
    [Fact]
    public void AFileReportsItsHostSizeThroughTheInterface()
    {
        using var file = _files.Open("f.img");
        Assert.Equal(file.Capabilities.AllocationMap ? 64 * 1024 : null, ((IBlockStorage)file).AllocatedBytes);
        Assert.Equal(file.AllocatedBytes, ((IBlockStorage)file).AllocatedBytes);
    }

    /// <summary>The inline-read limit set through the interface is the file's.</summary>
    [Fact]
    public void AFileTakesTheInlineReadLimit()
    {
        using var file = _files.Open("f.img");
        Assert.Equal(FileStorage.DefaultInlineReadLimit, file.InlineReadLimit);
        ((IBlockStorage)file).SetInlineReadLimit(32 << 20);
        Assert.Equal(32 << 20, file.InlineReadLimit);
    }

    // ---- Defaults: storage that declares nothing.

    /// <summary>Memory, and any test double that declares nothing, promise nothing: not durable, no host size, no inline reads.</summary>
    [Fact]
    public void MemoryAndUndeclaredDoublesGetTheSafeDefaults()
    {
        foreach (IBlockStorage storage in new IBlockStorage[] { new MemoryStorage(), new Undeclared() })
        {
            Assert.False(storage.WritesAreDurable);
            Assert.Null(storage.AllocatedBytes);
            storage.SetInlineReadLimit(1 << 20); // a hint it may ignore: must not throw
        }
    }

    // ---- FaultInjectingStorage (blkdebug).

    /// <summary>Injecting faults does not change durability: over a write-through file a completed write is durable, over write-back it is not.</summary>
    [Theory]
    [InlineData(CacheMode.WriteThrough, true)]
    [InlineData(CacheMode.DirectSync, true)]
    [InlineData(CacheMode.WriteBack, false)]
    public void FaultInjectionOverAFileIsAsDurableAsTheFile(CacheMode cache, bool durable)
    {
        using IBlockStorage storage = new FaultInjectingStorage(_files.Open("f.img", cache), NoRules);
        Assert.Equal(durable, storage.WritesAreDurable);
    }

    /// <summary>
    /// qemu-img info of an image on a blkdebug node over a file prints "disk size: unavailable" (observed with QEMU
    /// 7.2), so the fault-injecting node reports no host size even though the file under it has one.
    /// </summary>
    [Fact]
    public void FaultInjectionReportsNoHostSizeAsQemuImg()
    {
        var file = _files.Open("f.img");
        using IBlockStorage storage = new FaultInjectingStorage(file, NoRules);
        if (HostMaps) Assert.NotNull(((IBlockStorage)file).AllocatedBytes); // under QED_PORTABLE_IO the file has none either
        Assert.Null(storage.AllocatedBytes);
    }

    /// <summary>The inline-read limit reaches the file under the fault-injecting node.</summary>
    [Fact]
    public void FaultInjectionPassesTheInlineReadLimitToTheFile()
    {
        var file = _files.Open("f.img");
        using IBlockStorage storage = new FaultInjectingStorage(file, NoRules);
        storage.SetInlineReadLimit(32 << 20);
        Assert.Equal(32 << 20, file.InlineReadLimit);
    }

    /// <summary>Growing through the node reserves space in the file (fallocate), as growing the file does, and has completed on return.</summary>
    [Fact]
    public void FaultInjectionGrowsTheFileItWraps()
    {
        using IBlockStorage storage = new FaultInjectingStorage(_files.Open("f.img"), NoRules);
        AssertGrowsAndReserves(storage, _files["f.img"]);
    }

    // ---- QuorumStorage.

    /// <summary>A quorum's completed write is durable only when every child's is.</summary>
    [Theory]
    [InlineData(CacheMode.WriteThrough, CacheMode.DirectSync, true)]
    [InlineData(CacheMode.WriteThrough, CacheMode.WriteBack, false)]
    [InlineData(CacheMode.WriteBack, CacheMode.WriteBack, false)]
    public void AQuorumIsDurableWhenEveryChildIs(CacheMode first, CacheMode second, bool durable)
    {
        using IBlockStorage quorum = new QuorumStorage([_files.Open("a.img", first), _files.Open("b.img", second)], 1);
        Assert.Equal(durable, quorum.WritesAreDurable);
    }

    /// <summary>A quorum's host size is its children's summed (qemu-img's disk size of a quorum), and unknown if one child's is.</summary>
    [Fact]
    public void AQuorumsHostSizeIsItsChildrensSum()
    {
        using (IBlockStorage quorum = new QuorumStorage([_files.Open("a.img"), _files.Open("b.img")], 2))
            Assert.Equal(HostMaps ? 2 * 64 * 1024 : null, quorum.AllocatedBytes);
        using (IBlockStorage mixed = new QuorumStorage([_files.Open("a.img"), new MemoryStorage()], 1))
            Assert.Null(mixed.AllocatedBytes);
    }

    /// <summary>The inline-read limit reaches every child, also through a fault-injecting child.</summary>
    [Fact]
    public void AQuorumPassesTheInlineReadLimitToEveryChild()
    {
        var a = _files.Open("a.img");
        var b = _files.Open("b.img");
        using IBlockStorage quorum = new QuorumStorage([a, new FaultInjectingStorage(b, NoRules)], 1);
        quorum.SetInlineReadLimit(32 << 20);
        Assert.Equal(32 << 20, a.InlineReadLimit);
        Assert.Equal(32 << 20, b.InlineReadLimit);
    }

    /// <summary>Growing a quorum grows and reserves every child, and has completed on return.</summary>
    [Fact]
    public void AQuorumGrowsEveryChild()
    {
        using IBlockStorage quorum = new QuorumStorage([_files.Open("a.img"), _files.Open("b.img")], 2);
        AssertGrowsAndReserves(quorum, _files["a.img"], _files["b.img"]);
    }

    // ---- DiskImageStorage (a format inside a format).

    /// <summary>
    /// A nested image's host size is the image's: qemu-img info of raw over qed over a file shows the file's disk size
    /// (observed with QEMU 7.2).
    /// </summary>
    [Fact]
    public async Task ANestedImagesHostSizeIsTheImages()
    {
        string path = _files.Sparse("inner.img");
        await using IBlockStorage nested = new DiskImageStorage(new RawImage(FileStorage.Open(path, writable: false), readOnly: true));
        Assert.Equal(HostMaps ? 64 * 1024 : null, nested.AllocatedBytes);
    }

    /// <summary>An image's completed write is not promised durable (its metadata may wait for a flush), even over a write-through file.</summary>
    [Fact]
    public async Task ANestedImageIsNotDurableEvenOverAWriteThroughFile()
    {
        await using IBlockStorage nested = new DiskImageStorage(new RawImage(_files.Open("inner.img", CacheMode.WriteThrough), readOnly: false));
        Assert.False(nested.WritesAreDurable);
    }

    /// <summary>Growing within the image's virtual size has completed on return; past it, it fails at once.</summary>
    [Fact]
    public async Task ANestedImageGrowsSynchronouslyWithinItsSize()
    {
        await using IBlockStorage nested = new DiskImageStorage(new RawImage(_files.Open("inner.img"), readOnly: false));
        Assert.True(nested.GrowAsync(4096).IsCompletedSuccessfully);
        Assert.Throws<IOException>(() => nested.GrowAsync(nested.Length + 1).AsTask().GetAwaiter().GetResult());
    }

    // ---- The growth contract, for the storages that do not wrap a file.

    /// <summary>Memory and an undeclared double (the interface's default) grow before the call returns, keeping the data.</summary>
    [Fact]
    public async Task MemoryAndTheDefaultGrowSynchronously()
    {
        foreach (IBlockStorage storage in new IBlockStorage[] { new MemoryStorage(new byte[] { 1, 2, 3 }), new Undeclared() })
        {
            long before = storage.Length;
            var grow = storage.GrowAsync(before + (1 << 20));
            Assert.True(grow.IsCompletedSuccessfully, $"{storage.GetType().Name}: growing had not completed on return");
            Assert.Equal(before + (1 << 20), storage.Length);
            Assert.True(storage.GrowAsync(1).IsCompletedSuccessfully);
            Assert.Equal(before + (1 << 20), storage.Length); // never shrinks
            var head = new byte[3];
            await storage.ReadAsync(0, head);
            if (storage is MemoryStorage) Assert.Equal(new byte[] { 1, 2, 3 }, head);
        }
    }

    /// <summary>Whether files here tell holes from data (false under QED_PORTABLE_IO, which turns SEEK_DATA off).</summary>
    private static bool HostMaps => NativeFile.CanMapAllocation;

    /// <summary>
    /// Grows <paramref name="storage"/> from 4 MiB to 16 MiB: the call has completed on return (the growth contract),
    /// every file under it is 16 MiB long with its first byte intact, and the host reserved the 12 MiB grown (a set
    /// length would leave a hole), or, where the host cannot reserve (QED_PORTABLE_IO), left the growth a hole.
    /// </summary>
    private static void AssertGrowsAndReserves(IBlockStorage storage, params string[] files)
    {
        var grow = storage.GrowAsync(16 << 20);
        Assert.True(grow.IsCompletedSuccessfully, "growing had not completed on return");
        Assert.Equal(16 << 20, storage.Length);
        foreach (string path in files)
        {
            Assert.Equal(16 << 20, new FileInfo(path).Length);
            Assert.Equal(1, File.ReadAllBytes(path)[0]);
            long reserved = ScratchFiles.BlocksOf(path) - 64 * 1024; // the grown range, not the hole the file had
            if (NativeFile.CanReserve)
                Assert.True(reserved >= 12 << 20, $"{Path.GetFileName(path)}: only {reserved} bytes reserved after growing 12 MiB");
            else
                Assert.True(reserved < 1 << 20, $"{Path.GetFileName(path)}: {reserved} bytes allocated after growing 12 MiB with reserving off");
        }
    }

    /// <summary>A test double that declares no capability and no GrowAsync: what the interface's defaults give.</summary>
    private sealed class Undeclared : IBlockStorage
    {
        private readonly MemoryStorage _memory = new();
        public string Name => "undeclared";
        public bool CanWrite => true;
        public long Length => _memory.Length;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) => _memory.ReadAsync(offset, buffer, ct);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default) => _memory.WriteAsync(offset, data, ct);
        public ValueTask FlushAsync(CancellationToken ct = default) => _memory.FlushAsync(ct);
        public ValueTask SetLengthAsync(long length, CancellationToken ct = default) => _memory.SetLengthAsync(length, ct);
        public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken ct = default) => _memory.ZeroRangeAsync(offset, length, ct);
        public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken ct = default) =>
            _memory.GetAllocationAsync(offset, maxLength, ct);
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        public void Dispose() { }
    }
}
