using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Formats.Qcow2;

/// <summary>A new qcow2 image on <see cref="MemoryStorage"/> and the writer components built on it, as the image wires them.</summary>
internal sealed class Qcow2Components
{
    public required IBlockStorage Storage { get; init; }
    public required Qcow2Header Header { get; init; }
    public required ulong[] L1 { get; init; }
    public required Qcow2Refcounts Refcounts { get; init; }
    public required Qcow2FailureLatch Failure { get; init; }
    public required Qcow2OverlapGuard Guard { get; init; }
    public required Qcow2ClusterAllocator Allocator { get; init; }
    public required Qcow2L2Cache Cache { get; init; }
    public required Qcow2WriteBack WriteBack { get; init; }
    public int ClusterSize => Header.ClusterSize;

    /// <summary>Creates an image of <paramref name="size"/> bytes and builds the components over <paramref name="wrap"/> of its storage.</summary>
    public static async Task<Qcow2Components> NewAsync(int clusterSize = 512, long size = 4 << 20, int version = 3,
        Func<MemoryStorage, IBlockStorage>? wrap = null, int? refcountOrder = null)
    {
        var memory = new MemoryStorage("components.qcow2");
        await Qcow2Image.CreateAsync(memory, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, Version = version });
        IBlockStorage s = wrap?.Invoke(memory) ?? memory;
        var head = new byte[Qcow2Header.V3WrittenLength];
        await s.ReadAsync(0, head);
        var header = Qcow2Header.Parse(head);
        if (refcountOrder != null) header = header with { RefcountOrder = (uint)refcountOrder.Value };
        var l1 = await Qcow2Entries.ReadAsync(s, (long)header.L1TableOffset, (int)header.L1Size, default);
        var refcounts = await Qcow2Refcounts.LoadAsync(s, header, default);
        var failure = new Qcow2FailureLatch(s, s.Name, version >= 3, header.IncompatibleFeatures);
        var guard = new Qcow2OverlapGuard(header, l1, refcounts, failure, s.Name);
        long end = (s.Length + clusterSize - 1) / clusterSize * clusterSize;
        var allocator = new Qcow2ClusterAllocator(refcounts, guard, (int)header.ClusterBits, end, s.Name);
        var cache = new Qcow2L2Cache(clusterSize, 1 << 20);
        var writeBack = new Qcow2WriteBack(s, refcounts, allocator, guard, cache, l1, (long)header.L1TableOffset, clusterSize);
        return new Qcow2Components
        {
            Storage = s, Header = header, L1 = l1, Refcounts = refcounts, Failure = failure, Guard = guard,
            Allocator = allocator, Cache = cache, WriteBack = writeBack,
        };
    }

    /// <summary>The refcount of host cluster <paramref name="cluster"/> as the loaded blocks say (0 without a block).</summary>
    public async Task<ulong> RefcountAsync(long cluster)
    {
        var block = await Allocator.GetBlockAsync(Refcounts.BlockIndexOf(cluster), default);
        return block == null ? 0 : Refcounts.Get(block, cluster);
    }

    public static async Task<ulong> U64Async(IBlockStorage s, long at)
    {
        var b = new byte[8];
        await s.ReadAsync(at, b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    public static async Task PutU64Async(IBlockStorage s, long at, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        await s.WriteAsync(at, b);
    }
}
