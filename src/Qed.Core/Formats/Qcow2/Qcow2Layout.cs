using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The layout of a new qcow2 image, as <c>qemu-img create -f qcow2</c> makes it: the header cluster (header,
/// extensions, backing name), the refcount table, the refcount block(s) counting the metadata, the L1 table, and with
/// preallocation the L2 tables and guest clusters after it (<see cref="Qcow2PreallocationPlan"/>).
/// </summary>
/// <remarks>Invariants: every cluster below the end of the file is counted once (refcount 1: metadata, or with
/// preallocation a guest cluster mapped once) and nothing else is counted; the refcount blocks count themselves (the
/// plan is the fixed point of that); options are validated, in qemu-img's order, before anything is written.</remarks>
internal static class Qcow2Layout
{
    /// <summary>Everything a new image holds.</summary>
    /// <param name="Header">The header written at offset 0.</param>
    /// <param name="FirstCluster">The header cluster: header, extensions, backing name.</param>
    /// <param name="RefTableOffset">Where the refcount table starts (cluster 1).</param>
    /// <param name="RefTableClusters">Its size in clusters.</param>
    /// <param name="RefBlocksOffset">Where the refcount blocks made before the L1 table start.</param>
    /// <param name="RefBlocks">How many blocks precede the L1 table.</param>
    /// <param name="L1Offset">Where the L1 table starts (for a guest of size 0, where it would: the header then says 0).</param>
    /// <param name="L1Bytes">Its size in bytes (entries × 8).</param>
    /// <param name="MetadataClusters">Clusters holding metadata: header, refcount table and blocks, L1 and L2 tables.</param>
    /// <param name="Preallocation">What follows the L1 table.</param>
    /// <param name="GuestClusters">Clusters of guest data (the size rounded up to a cluster).</param>
    /// <param name="TotalClusters">Clusters below the end of the file, all counted.</param>
    internal sealed record Layout(Qcow2Header Header, byte[] FirstCluster, long RefTableOffset, int RefTableClusters,
        long RefBlocksOffset, int RefBlocks, long L1Offset, long L1Bytes, long MetadataClusters,
        Qcow2Preallocation Preallocation, long GuestClusters, long TotalClusters)
    {
        /// <summary>Refcount entries per block.</summary>
        public long PerBlock => (long)FirstCluster.Length * 8 / (1 << (int)Header.RefcountOrder);

        /// <summary>The cluster after the L1 table, where preallocation starts.</summary>
        public long AfterL1 => L1Offset / FirstCluster.Length + (L1Bytes + FirstCluster.Length - 1) / FirstCluster.Length;

        /// <summary>The placements after the L1 table (none without preallocation).</summary>
        public IEnumerable<Qcow2Placement> Placements => Preallocation == Qcow2Preallocation.Off ? [] :
            Qcow2PreallocationPlan.Place(AfterL1, RefBlocks * PerBlock, PerBlock, L1Bytes / 8, FirstCluster.Length / 8, GuestClusters);

        /// <summary>Writes this layout onto storage.</summary>
        public ImageCreation.Writer Writer => (storage, ct) => WriteAsync(storage, this, ct);
    }

    private const string V3Hint = "(use version=v3 or greater)";

    /// <summary>
    /// Validates the options (after opening the backing file for its size where they say so) and plans the layout;
    /// nothing is written yet.
    /// </summary>
    public static async Task<ImageCreation.Writer> PlanAsync(string path, Qcow2CreateOptions options, CancellationToken ct)
    {
        long size = await ImageCreation.ResolveSizeAsync(path, options, ct).ConfigureAwait(false);
        return Plan(options, size).Writer;
    }

    /// <summary>
    /// Validates the options, in qemu-img 7.2's order and with its words, and plans the layout for a guest of
    /// <paramref name="size"/> bytes.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    /// <exception cref="NotSupportedException">Valid for qemu-img, but the image could not be opened here (extended L2, zstd).</exception>
    public static Layout Plan(Qcow2CreateOptions options, long size)
    {
        int cs = options.ClusterSize ?? Qcow2CreateOptions.DefaultClusterSize;
        bool v3 = options.Version == 3;
        if (options.Version is not (2 or 3))
            throw new ArgumentException($"qcow2 version must be 2 (compat=0.10) or 3 (compat=1.1) (version={options.Version})");
        ImageCreation.CheckBackingFormat(options);
        if (options.ExtendedL2 && !v3)
            throw new ArgumentException($"Extended L2 entries are only supported with compatibility level 1.1 and above {V3Hint}");
        if (cs < 512 || cs > (1 << Qcow2Header.MaxClusterBits) || !BitOperations.IsPow2(cs))
            throw new ArgumentException("Cluster size must be a power of two between 512 and 2048k");
        if (options.ExtendedL2 && cs < 16384)
            throw new ArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
        if (options.BackingFile == null && options.BackingFormat != null)
            throw new ArgumentException("Backing format cannot be used without backing file");
        if (options.BackingFile != null && options.Preallocation != Qcow2Preallocation.Off && !options.ExtendedL2)
            throw new ArgumentException("Backing file and preallocation can only be used at the same time if extended_l2 is on");
        if (options.LazyRefcounts && !v3)
            throw new ArgumentException($"Lazy refcounts only supported with compatibility level 1.1 and above {V3Hint}");
        int refBits = options.RefcountBits;
        if (refBits < 1 || refBits > 64 || !BitOperations.IsPow2(refBits))
            throw new ArgumentException("Refcount width must be a power of two and may not exceed 64 bits");
        if (refBits != 16 && !v3)
            throw new ArgumentException($"Different refcount widths than 16 bits require compatibility level 1.1 or above {V3Hint}");
        if (options.CompressionType != Qcow2CompressionType.Zlib && !v3)
            throw new ArgumentException($"Non-zlib compression type is only supported with compatibility level 1.1 and above {V3Hint}");
        if (size < 0) throw new ArgumentException($"Image size must not be negative (size={size})");
        int bits = BitOperations.Log2((uint)cs);
        long rounded = size > long.MaxValue - 511 ? long.MaxValue : (size + 511) & ~511L;
        long l1Entries = Qcow2Header.L1EntriesFor((ulong)rounded, bits);
        if (l1Entries * 8 > Qcow2Header.MaxL1Bytes)
            throw new ArgumentException("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
        // qemu-img accepts these; this library cannot open the images they make, so it does not make them.
        if (options.ExtendedL2)
            throw new NotSupportedException("extended_l2=on is not supported: qed cannot read or write qcow2 images with subclusters (extended L2 entries)");
        if (options.CompressionType == Qcow2CompressionType.Zstd)
            throw new NotSupportedException("compression_type=zstd is not supported: qed cannot read or write qcow2 images that name zstd compression (use zlib)");

        byte[]? name = null, format = null;
        if (options.BackingFile != null)
        {
            name = Encoding.UTF8.GetBytes(options.BackingFile);
            if (name.Length == 0) throw new ArgumentException("The backing file name is empty");
            if (name.Length > Qcow2Header.MaxBackingNameLength)
                throw new ArgumentException($"The backing file name is {name.Length} bytes; qcow2 allows at most {Qcow2Header.MaxBackingNameLength}");
            if (options.BackingFormat is { } backingFormat) format = Encoding.UTF8.GetBytes(backingFormat.Name());
        }

        int headerLength = v3 ? Qcow2Header.V3WrittenLength : Qcow2Header.V2Length;
        int extensionsLength = (format == null ? 0 : 8 + ((format.Length + 7) & ~7)) + 8; // + end marker
        int nameOffset = headerLength + extensionsLength;
        if (nameOffset + (name?.Length ?? 0) > cs)
            throw new ArgumentException($"The backing file name ({name!.Length} bytes) does not fit in the {cs}-byte header cluster");

        // Metadata clusters: header, refcount table, refcount blocks, L1. Find the fixed point where the blocks count
        // every metadata cluster including themselves; with preallocation the table must also hold the blocks made
        // after the L1 table, so grow it and plan again until it does.
        // An empty image has no L1 table at all (offset 0, as qemu-img writes it): nothing to allocate for it.
        long l1Clusters = (l1Entries * 8 + cs - 1) / cs;
        long refsPerBlock = (long)cs * 8 / refBits;
        long guestClusters = (rounded + cs - 1) / cs;
        long l2Entries = cs / 8;
        long tableClusters = 1, blocks = 1, total;
        while (true)
        {
            while (true)
            {
                long metadata = 1 + tableClusters + blocks + l1Clusters;
                long needBlocks = (metadata + refsPerBlock - 1) / refsPerBlock;
                long needTable = Math.Max(tableClusters, (needBlocks * 8 + cs - 1) / cs);
                if (needBlocks == blocks && needTable == tableClusters) break;
                blocks = needBlocks;
                tableClusters = needTable;
            }
            long afterL1 = 1 + tableClusters + blocks + l1Clusters;
            if (options.Preallocation == Qcow2Preallocation.Off)
            {
                total = afterL1;
                break;
            }
            var (end, allBlocks) = Qcow2PreallocationPlan.Measure(afterL1, blocks * refsPerBlock, refsPerBlock, l1Entries, l2Entries, guestClusters);
            long tableNeeded = Math.Max(1, (allBlocks * 8 + cs - 1) / cs);
            if (tableNeeded <= tableClusters)
            {
                total = end;
                break;
            }
            tableClusters = tableNeeded;
        }
        if (tableClusters * cs > Qcow2Header.MaxRefcountTableBytes)
            throw new ArgumentException("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
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
            L1TableOffset = l1Entries == 0 ? 0 : (ulong)l1Offset,
            RefcountTableOffset = (ulong)refTableOffset,
            RefcountTableClusters = (uint)tableClusters,
            RefcountOrder = (uint)BitOperations.Log2((uint)refBits),
            CompatibleFeatures = options.LazyRefcounts ? Qcow2Header.LazyRefcountsBit : 0,
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
        long metadataClusters = options.Preallocation == Qcow2Preallocation.Off ? total : total - guestClusters;
        return new Layout(header, first, refTableOffset, (int)tableClusters, blocksOffset, (int)blocks, l1Offset, l1Entries * 8,
            metadataClusters, options.Preallocation, guestClusters, total);
    }

    /// <summary>Writes the planned image onto <paramref name="storage"/>, replacing its content, in file order, and syncs.</summary>
    public static async Task WriteAsync(IBlockStorage storage, Layout layout, CancellationToken ct)
    {
        int cs = layout.FirstCluster.Length;
        int refBits = 1 << (int)layout.Header.RefcountOrder;
        long perBlock = layout.PerBlock;
        await storage.SetLengthAsync(0, ct).ConfigureAwait(false);
        await storage.WriteAsync(0, layout.FirstCluster, ct).ConfigureAwait(false);

        // The refcount table and the L1 table name what the placements put after the L1 table.
        var table = new byte[(long)layout.RefTableClusters * cs];
        for (int i = 0; i < layout.RefBlocks; i++)
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), (ulong)(layout.RefBlocksOffset + (long)i * cs));
        byte[]? l1 = layout.Preallocation == Qcow2Preallocation.Off ? null : new byte[layout.L1Bytes];
        foreach (var p in layout.Placements)
        {
            if (p.Kind == Qcow2PlacementKind.RefcountBlock)
                BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(p.Index * 8)), (ulong)(p.Cluster * cs));
            else if (p.Kind == Qcow2PlacementKind.L2Table)
                BinaryPrimitives.WriteUInt64BigEndian(l1.AsSpan((int)(p.Index * 8)), (ulong)(p.Cluster * cs) | Qcow2Entries.CopiedFlag);
        }
        await storage.WriteAsync(layout.RefTableOffset, table, ct).ConfigureAwait(false);

        var block = new byte[cs];
        for (int i = 0; i < layout.RefBlocks; i++)
        {
            FillRefcounts(block, i * perBlock, perBlock, layout.TotalClusters, refBits);
            await storage.WriteAsync(layout.RefBlocksOffset + (long)i * cs, block, ct).ConfigureAwait(false);
        }

        if (l1 == null)
        {
            // The L1 table reads as zeroes without being written; extending the file keeps it inside and sparse.
            await storage.SetLengthAsync(layout.L1Bytes == 0 ? layout.TotalClusters * cs : layout.L1Offset + Math.Max(layout.L1Bytes, 8), ct).ConfigureAwait(false);
            await storage.FlushAsync(ct).ConfigureAwait(false);
            return;
        }
        if (l1.Length > 0) await storage.WriteAsync(layout.L1Offset, l1, ct).ConfigureAwait(false);
        var l2 = new byte[cs];
        long l2Data = -1; // the L2 table waiting for the guest clusters it maps (written once their offsets are known)
        foreach (var p in layout.Placements)
        {
            switch (p.Kind)
            {
                case Qcow2PlacementKind.L2Table:
                    l2Data = p.Cluster;
                    break;
                case Qcow2PlacementKind.Data:
                    Array.Clear(l2);
                    for (long c = 0; c < p.Count; c++)
                        BinaryPrimitives.WriteUInt64BigEndian(l2.AsSpan((int)(c * 8)), (ulong)((p.Cluster + c) * cs) | Qcow2Entries.CopiedFlag);
                    await storage.WriteAsync(l2Data * cs, l2, ct).ConfigureAwait(false);
                    if (layout.Preallocation == Qcow2Preallocation.Falloc)
                        await storage.GrowAsync((p.Cluster + p.Count) * cs, ct).ConfigureAwait(false);
                    else if (layout.Preallocation == Qcow2Preallocation.Full)
                        await Zeroes.WriteAsync(storage, p.Cluster * cs, p.Count * cs, ct).ConfigureAwait(false);
                    break;
                case Qcow2PlacementKind.RefcountBlock:
                    FillRefcounts(block, p.Index * perBlock, perBlock, layout.TotalClusters, refBits);
                    await storage.WriteAsync(p.Cluster * cs, block, ct).ConfigureAwait(false);
                    break;
            }
        }
        // Metadata preallocation leaves the guest clusters as holes: the file is extended over them.
        await storage.GrowAsync(layout.TotalClusters * cs, ct).ConfigureAwait(false);
        await storage.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Fills <paramref name="block"/> with refcount 1 for clusters [<paramref name="first"/>, <paramref name="end"/>)
    /// and 0 for the rest of its <paramref name="perBlock"/> entries, at <paramref name="bits"/> bits each
    /// (big-endian; below 8 bits the first entry is a byte's least significant bits, as the specification orders them).
    /// </summary>
    internal static void FillRefcounts(byte[] block, long first, long perBlock, long end, int bits)
    {
        Array.Clear(block);
        long ones = Math.Clamp(end - first, 0, perBlock);
        for (long i = 0; i < ones; i++)
        {
            if (bits >= 8) block[(i + 1) * (bits / 8) - 1] = 1;
            else block[i * bits / 8] |= (byte)(1 << (int)(i * bits % 8));
        }
    }
}
