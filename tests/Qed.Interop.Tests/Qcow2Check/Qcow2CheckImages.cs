using System.Buffers.Binary;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Qcow2Check;

/// <summary>
/// qcow2 images made once per test class by qemu-img and qemu-io (and one by qed), in every geometry the check must
/// read: default, 4 KiB and 2 MiB clusters, refcount widths 1, 8 and 64, compat=0.10, a backing file, internal
/// snapshots, compressed clusters, preallocated metadata, a dirty lazy-refcounts image, two L2 tables.
/// </summary>
public sealed class Qcow2CheckImages : IDisposable
{
    public TempDir Dir { get; } = new();

    /// <summary>The base images by name.</summary>
    public static readonly string[] Bases =
        ["default", "k4", "m2", "r1", "r8", "r64", "v2", "overlay", "snap", "compressed", "prealloc", "dirty", "two-tables", "by-qed"];

    public Qcow2CheckImages()
    {
        void Make(string name, string options, string size = "64M")
        {
            Tool.Ok(Dir.QemuImg(["create", "-q", "-f", "qcow2", .. (options.Length > 0 ? new[] { "-o", options } : []), name + ".qcow2", size]));
            Tool.Ok(Dir.QemuIo("-c", "write -P 0xab 0 128k", "-c", "write -P 0xcd 10M 64k", "-c", "write -z 20M 64k", name + ".qcow2"));
        }
        Make("default", "");
        Make("k4", "cluster_size=4096");
        Make("m2", "cluster_size=2M");
        Make("r1", "refcount_bits=1");
        Make("r8", "refcount_bits=8");
        Make("r64", "refcount_bits=64");
        Make("v2", "compat=0.10");
        Tool.Ok(Dir.QemuImg("create", "-q", "-f", "qcow2", "-b", "default.qcow2", "-F", "qcow2", "overlay.qcow2"));
        Tool.Ok(Dir.QemuIo("-c", "write -P 0x77 64k 64k", "overlay.qcow2"));
        Make("snap", "");
        Tool.Ok(Dir.QemuImg("snapshot", "-c", "one", "snap.qcow2"));
        Tool.Ok(Dir.QemuIo("-c", "write -P 0x11 0 64k", "snap.qcow2"));
        Tool.Ok(Dir.QemuImg("snapshot", "-c", "two", "snap.qcow2"));
        Tool.Ok(Dir.QemuIo("-c", "write -P 0x12 10M 4k", "snap.qcow2"));
        Tool.Ok(Dir.QemuImg("convert", "-c", "-O", "qcow2", "default.qcow2", "compressed.qcow2"));
        Tool.Ok(Dir.QemuImg("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "prealloc.qcow2", "8M"));
        Tool.Ok(Dir.QemuIo("-c", "write -P 0x44 1M 64k", "prealloc.qcow2"));
        // Lazy refcounts and an abort before the refcounts are written: the dirty bit stays set, refcounts stale.
        Tool.Ok(Dir.QemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "dirty.qcow2", "64M"));
        Dir.QemuIo("-c", "write -P 0x5a 0 256k", "-c", "abort", "dirty.qcow2");
        Make("two-tables", "", "2G");
        Tool.Ok(Dir.QemuIo("-c", "write -P 0xef 1G 64k", "two-tables.qcow2"));
        Tool.Ok(Dir.Qed("convert", "-O", "qcow2", "default.qcow2", "by-qed.qcow2"));
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>Reads and pokes a qcow2 file's structures by their header fields (big-endian, as the format).</summary>
internal sealed class Qcow2Bytes(byte[] bytes)
{
    public byte[] Bytes { get; } = bytes;
    public ulong U64(long at) => BinaryPrimitives.ReadUInt64BigEndian(Bytes.AsSpan((int)at));
    public void Poke(long at, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(Bytes.AsSpan((int)at), value);
    public int ClusterBits => (int)BinaryPrimitives.ReadUInt32BigEndian(Bytes.AsSpan(20));
    public int ClusterSize => 1 << ClusterBits;
    public long L1 => (long)U64(40);
    public long RefTable => (long)U64(48);
    public int RefcountBits => BinaryPrimitives.ReadUInt32BigEndian(Bytes.AsSpan(4)) >= 3 ? 1 << (int)BinaryPrimitives.ReadUInt32BigEndian(Bytes.AsSpan(96)) : 16;
    /// <summary>The file offset of L2 table <paramref name="l1Index"/>'s entry <paramref name="index"/>.</summary>
    public long L2Entry(int l1Index, int index) => (long)(U64(L1 + 8L * l1Index) & 0x00ff_ffff_ffff_fe00UL) + 8L * index;
    /// <summary>The first L2 entry of table 0 that maps a standard data cluster, and its host offset.</summary>
    public (long At, long Host) FirstData(int skip = 0)
    {
        for (int i = 0; i < ClusterSize / 8; i++)
        {
            ulong e = U64(L2Entry(0, i));
            long host = (long)(e & 0x00ff_ffff_ffff_fe00UL);
            if ((e & (1UL << 62)) == 0 && (e & 1) == 0 && host != 0 && skip-- == 0) return (L2Entry(0, i), host);
        }
        throw new InvalidOperationException("no data cluster in L2 table 0");
    }
    /// <summary>An unallocated entry of L2 table 0 (after the written ones).</summary>
    public long FreeL2Entry() => L2Entry(0, 100);
    /// <summary>Sets the refcount of host cluster <paramref name="cluster"/> in refcount block 0.</summary>
    public void SetRefcount(long cluster, ulong value)
    {
        long block = (long)U64(RefTable);
        int bits = RefcountBits;
        if (bits >= 8)
        {
            int bytes = bits / 8;
            for (int i = 0; i < bytes; i++) Bytes[block + cluster * bytes + i] = (byte)(value >> (8 * (bytes - 1 - i)));
        }
        else
        {
            long bit = cluster * bits;
            int mask = ((1 << bits) - 1) << (int)(bit % 8);
            ref byte b = ref Bytes[block + bit / 8];
            b = (byte)((b & ~mask) | (((int)value << (int)(bit % 8)) & mask));
        }
    }
}
