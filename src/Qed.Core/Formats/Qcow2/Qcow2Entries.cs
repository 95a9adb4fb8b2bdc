using System.Buffers.Binary;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>What a guest cluster's L2 entry says about it.</summary>
internal enum Qcow2ClusterKind
{
    /// <summary>No entry (or no L2 table): the backing file, or zeroes without one.</summary>
    Unallocated,
    /// <summary>Reads as zeroes (version 3 only), possibly with host space kept (a preallocated zero cluster).</summary>
    Zero,
    /// <summary>A standard cluster at a host offset.</summary>
    Data,
    /// <summary>A deflate-compressed cluster: a byte range of whole or partial sectors.</summary>
    Compressed,
}

/// <summary>
/// The qcow2 table entry codec: tables of big-endian u64 entries on disk, the flag bits of L1, L2 and refcount table
/// entries, and the validation that decides whether an entry may be followed. Pure functions of an entry and the
/// image's geometry; they hold no state and take no lock.
/// </summary>
/// <remarks>
/// Invariants the validators enforce (the qcow2 specification's, with the file's bounds): an entry that is followed
/// names a cluster-aligned host offset (a compressed entry: any byte offset) past the header cluster and below
/// <c>validEnd</c> (the file as opened plus what this session allocated), with no reserved bits set; a zero cluster
/// exists only in version 3; offset 0 with the copied flag is only valid with an external data file (unsupported).
/// A problem is returned as the words that finish "holds 0x…, which …", so every caller names entry, value and offset.
/// </remarks>
internal static class Qcow2Entries
{
    /// <summary>L1/L2 bit 63: the refcount is exactly one (the cluster may be written in place).</summary>
    public const ulong CopiedFlag = 1UL << 63;
    /// <summary>L2 bit 62: the cluster is compressed.</summary>
    public const ulong CompressedFlag = 1UL << 62;
    /// <summary>L2 bit 0 (version 3): the cluster reads as zeroes.</summary>
    public const ulong ZeroFlag = 1;
    /// <summary>Bits 9-55 of a standard L1 or L2 entry: the host offset.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    /// <summary>Bits a standard L2 entry must leave clear (56-61 and 1-8).</summary>
    public const ulong L2ReservedMask = 0x3f00_0000_0000_01feUL;
    /// <summary>Bits 0-8 of a refcount table entry, reserved.</summary>
    public const ulong RefTableReservedMask = 0x1ff;

    /// <summary>Reads <paramref name="count"/> big-endian u64 entries at file offset <paramref name="offset"/>.</summary>
    public static async Task<ulong[]> ReadAsync(IBlockStorage file, long offset, int count, CancellationToken ct)
    {
        var raw = new byte[count * 8L];
        await file.ReadAsync(offset, raw, ct).ConfigureAwait(false);
        return Decode(raw);
    }

    /// <summary>Decodes big-endian u64 entries (the length is taken down to a multiple of 8).</summary>
    public static ulong[] Decode(ReadOnlySpan<byte> raw)
    {
        var entries = new ulong[raw.Length / 8];
        for (int i = 0; i < entries.Length; i++)
            entries[i] = BinaryPrimitives.ReadUInt64BigEndian(raw[(i * 8)..]);
        return entries;
    }

    /// <summary>Encodes entries [first, first+count) as big-endian bytes, each read with a volatile read (entries
    /// may change under a concurrent allocation; the writer holds the allocation lock, so none does here).</summary>
    public static byte[] Encode(ulong[] entries, int first, int count)
    {
        var bytes = new byte[count * 8L];
        for (int i = 0; i < count; i++)
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), Volatile.Read(ref entries[first + i]));
        return bytes;
    }

    /// <summary>Why a non-zero L1 entry cannot be followed, or null when it names an L2 table inside the file.</summary>
    public static string? L1Problem(ulong entry, int clusterSize, long validEnd)
    {
        long offset = (long)(entry & OffsetMask);
        return (entry & ~(OffsetMask | CopiedFlag)) != 0 ? "has reserved bits set" :
            offset % clusterSize != 0 ? "is not cluster aligned" :
            offset < clusterSize ? "points into the header" :
            offset >= validEnd ? "points past the end of the file" : null;
    }

    /// <summary>Why a non-zero refcount table entry cannot be followed, or null when it names a block inside the file.</summary>
    public static string? RefTableProblem(ulong entry, int clusterSize, long validEnd) =>
        (entry & RefTableReservedMask) != 0 ? "has reserved bits set" :
        entry % (ulong)clusterSize != 0 ? "is not cluster aligned" :
        entry < (ulong)clusterSize ? "points into the header" :
        entry >= (ulong)validEnd ? "points past the end of the file" : null;

    /// <summary>
    /// Says what an L2 entry means and where its bytes live (<paramref name="host"/>: a data cluster's offset, a
    /// compressed cluster's first byte, a preallocated zero cluster's offset, else -1); returns why it cannot be
    /// followed instead, with <paramref name="kind"/> and <paramref name="host"/> then meaningless.
    /// </summary>
    public static string? ClassifyL2(ulong entry, int clusterBits, bool v3, long validEnd, out Qcow2ClusterKind kind, out long host)
    {
        long clusterSize = 1L << clusterBits;
        string? problem;
        if ((entry & CompressedFlag) != 0)
        {
            host = CompressedHost(entry, clusterBits);
            kind = Qcow2ClusterKind.Compressed;
            problem =
                (entry & CopiedFlag) != 0 ? "is compressed but marked as copied" :
                host < clusterSize ? "points into the header" :
                host >= validEnd ? "points past the end of the file" : null;
            return problem;
        }
        host = (long)(entry & OffsetMask);
        problem =
            (entry & L2ReservedMask) != 0 ? "has reserved bits set" :
            (entry & ZeroFlag) != 0 && !v3 ? "is a zero cluster, which version 2 does not have" :
            host % clusterSize != 0 ? "is not cluster aligned" :
            host != 0 && host < clusterSize ? "points into the header" :
            host >= validEnd ? "points past the end of the file" :
            host == 0 && (entry & CopiedFlag) != 0 && (entry & ZeroFlag) == 0 ? "has offset 0 with the copied flag (only valid with an external data file)" :
            null;
        if ((entry & ZeroFlag) != 0)
        {
            kind = Qcow2ClusterKind.Zero;
            if (host == 0) host = -1;
        }
        else if (host == 0)
        {
            kind = Qcow2ClusterKind.Unallocated;
            host = -1;
        }
        else kind = Qcow2ClusterKind.Data;
        return problem;
    }

    /// <summary>The bit where a compressed entry's sector count starts (the specification's x = 62 - (cluster_bits - 8)).</summary>
    private static int CompressedShift(int clusterBits) => 62 - (clusterBits - 8);

    /// <summary>A compressed entry's first host byte.</summary>
    public static long CompressedHost(ulong entry, int clusterBits) => (long)(entry & ((1UL << CompressedShift(clusterBits)) - 1));

    /// <summary>A compressed entry's host byte range: from its first byte to the end of its last sector.</summary>
    public static (long Host, int Length) CompressedExtent(ulong entry, int clusterBits)
    {
        int x = CompressedShift(clusterBits);
        long host = (long)(entry & ((1UL << x) - 1));
        long extraSectors = (long)((entry >> x) & ((1UL << (clusterBits - 8)) - 1));
        return (host, (int)((extraSectors + 1) * 512 - (host & 511)));
    }

    /// <summary>The host byte range an L2 entry holds (what is freed when the entry lets go of it), or length 0 for none.</summary>
    public static (long Offset, long Length) HeldRange(ulong entry, int clusterBits)
    {
        if ((entry & CompressedFlag) != 0) return CompressedExtent(entry, clusterBits);
        long offset = (long)(entry & OffsetMask);
        return offset == 0 ? (0, 0) : (offset, 1L << clusterBits);
    }
}
