using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The layout of a new, empty qcow2 image, as <c>qemu-img create -f qcow2</c> makes it: the header cluster (header,
/// extensions, backing name), the refcount table, the refcount block(s) counting the metadata, then the L1 table.
/// </summary>
/// <remarks>Invariants: every metadata cluster has refcount 1 and nothing else is counted; the refcount blocks count
/// themselves (the plan is the fixed point of that); options are validated before anything is written.</remarks>
internal static class Qcow2Layout
{
    /// <summary>Everything a new image's first clusters hold.</summary>
    internal sealed record Layout(Qcow2Header Header, byte[] FirstCluster, long RefTableOffset, int RefTableClusters,
        long RefBlocksOffset, int RefBlocks, long L1Offset, long L1Bytes, long MetadataClusters);

    /// <summary>Validates the options and plans the layout for a guest of <paramref name="size"/> bytes.</summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static Layout Plan(Qcow2CreateOptions options, long size)
    {
        int cs = options.ClusterSize;
        if (cs < 512 || cs > (1 << Qcow2Header.MaxClusterBits) || !BitOperations.IsPow2(cs))
            throw new ArgumentException($"Cluster size must be a power of two between 512 and 2M (cluster_size={cs})");
        if (options.Version is not (2 or 3))
            throw new ArgumentException($"qcow2 version must be 2 (compat=0.10) or 3 (compat=1.1) (version={options.Version})");
        if (size < 0) throw new ArgumentException($"Image size must not be negative (size={size})");
        int bits = BitOperations.Log2((uint)cs);
        long rounded = size > long.MaxValue - 511 ? long.MaxValue : (size + 511) & ~511L;
        long l1Entries = Qcow2Header.L1EntriesFor((ulong)rounded, bits);
        if (l1Entries * 8 > Qcow2Header.MaxL1Bytes)
            throw new ArgumentException($"Image size {size} is too large for a qcow2 image with {cs}-byte clusters (the L1 table would exceed {Qcow2Header.MaxL1Bytes} bytes)");

        byte[]? name = null, format = null;
        if (options.BackingFile != null)
        {
            name = Encoding.UTF8.GetBytes(options.BackingFile);
            if (name.Length == 0) throw new ArgumentException("The backing file name is empty");
            if (name.Length > Qcow2Header.MaxBackingNameLength)
                throw new ArgumentException($"The backing file name is {name.Length} bytes; qcow2 allows at most {Qcow2Header.MaxBackingNameLength}");
            if (options.BackingFormat != null)
            {
                if (!QedImage.KnownFormats.Contains(options.BackingFormat))
                    throw new ArgumentException($"Unknown backing file format '{options.BackingFormat}'");
                format = Encoding.UTF8.GetBytes(options.BackingFormat);
            }
        }

        int headerLength = options.Version == 3 ? Qcow2Header.V3WrittenLength : Qcow2Header.V2Length;
        int extensionsLength = (format == null ? 0 : 8 + ((format.Length + 7) & ~7)) + 8; // + end marker
        int nameOffset = headerLength + extensionsLength;
        if (nameOffset + (name?.Length ?? 0) > cs)
            throw new ArgumentException($"The backing file name ({name!.Length} bytes) does not fit in the {cs}-byte header cluster");

        // Metadata clusters: header, refcount table, refcount blocks, L1. Find the fixed point where the blocks count
        // every metadata cluster including themselves.
        long l1Clusters = Math.Max(1, (l1Entries * 8 + cs - 1) / cs);
        long refsPerBlock = (long)cs * 8 / 16;
        long tableClusters = 1, blocks = 1;
        while (true)
        {
            long total = 1 + tableClusters + blocks + l1Clusters;
            long needBlocks = (total + refsPerBlock - 1) / refsPerBlock;
            long needTable = Math.Max(1, (needBlocks * 8 + cs - 1) / cs);
            if (needBlocks == blocks && needTable == tableClusters) break;
            blocks = needBlocks;
            tableClusters = needTable;
        }
        long refTableOffset = cs;
        long blocksOffset = refTableOffset + tableClusters * cs;
        long l1Offset = blocksOffset + blocks * cs;

        var header = new Qcow2Header
        {
            Magic = Qcow2Header.MagicValue,
            Version = (uint)options.Version,
            BackingFileOffset = name == null ? 0 : (ulong)nameOffset,
            BackingFileSize = (uint)(name?.Length ?? 0),
            ClusterBits = (uint)bits,
            Size = (ulong)rounded,
            L1Size = (uint)l1Entries,
            L1TableOffset = (ulong)l1Offset,
            RefcountTableOffset = (ulong)refTableOffset,
            RefcountTableClusters = (uint)tableClusters,
            RefcountOrder = 4,
            HeaderLength = (uint)headerLength,
        };
        var first = new byte[cs];
        header.WriteTo(first);
        int at = headerLength;
        if (format != null)
        {
            BinaryPrimitives.WriteUInt32BigEndian(first.AsSpan(at), Qcow2HeaderExtensions.BackingFormatType);
            BinaryPrimitives.WriteUInt32BigEndian(first.AsSpan(at + 4), (uint)format.Length);
            format.CopyTo(first, at + 8);
            at += 8 + ((format.Length + 7) & ~7);
        }
        at += 8; // end marker: type 0, length 0
        name?.CopyTo(first, at);
        return new Layout(header, first, refTableOffset, (int)tableClusters, blocksOffset, (int)blocks, l1Offset, l1Entries * 8,
            1 + tableClusters + blocks + l1Clusters);
    }

    /// <summary>Writes the planned image onto <paramref name="storage"/>, replacing its content, and syncs.</summary>
    public static async Task WriteAsync(IBlockStorage storage, Layout layout, CancellationToken ct)
    {
        int cs = layout.FirstCluster.Length;
        await storage.SetLengthAsync(0, ct).ConfigureAwait(false);
        await storage.WriteAsync(0, layout.FirstCluster, ct).ConfigureAwait(false);

        var table = new byte[(long)layout.RefTableClusters * cs];
        for (int i = 0; i < layout.RefBlocks; i++)
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), (ulong)(layout.RefBlocksOffset + (long)i * cs));
        await storage.WriteAsync(layout.RefTableOffset, table, ct).ConfigureAwait(false);

        var blocks = new byte[(long)layout.RefBlocks * cs];
        for (long c = 0; c < layout.MetadataClusters; c++)
            BinaryPrimitives.WriteUInt16BigEndian(blocks.AsSpan((int)(c * 2)), 1);
        await storage.WriteAsync(layout.RefBlocksOffset, blocks, ct).ConfigureAwait(false);

        // The L1 table reads as zeroes without being written; extending the file keeps it inside and sparse.
        await storage.SetLengthAsync(layout.L1Offset + Math.Max(layout.L1Bytes, 8), ct).ConfigureAwait(false);
        await storage.FlushAsync(ct).ConfigureAwait(false);
    }
}
