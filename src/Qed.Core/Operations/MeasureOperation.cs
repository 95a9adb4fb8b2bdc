using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// Computes how large an image file would be (qemu-img measure). For qcow2 and raw it gives qemu-img's figures:
/// qcow2 counts the header, L1 and every L2 table of the virtual size, refcount blocks for the fully allocated file and
/// their table, plus the data clusters. QEMU cannot measure QED; here QED counts the header, L1, the L2 tables the
/// data needs (all of them when fully allocated), plus the data clusters.
/// </summary>
internal static class MeasureOperation
{
    /// <summary>Sizes for a new, empty image of <paramref name="size"/> bytes.</summary>
    public static SizeMeasurement ForSize(long size, MeasureOptions options)
    {
        if (size < 0) throw new ArgumentException($"Invalid image size specified: {size}");
        return Compute((size + 511) & ~511L, options, dataClusters: 0, tablesNeeded: _ => 0);
    }

    /// <summary>Sizes for converting <paramref name="source"/> (its whole chain) into the target format.</summary>
    public static async Task<SizeMeasurement> ForImageAsync(DiskImage source, MeasureOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        Validate(options);
        long cs = options.Format == ImageFormat.Raw ? 1 : options.ClusterSize;
        long clusters = 0, last = -1;
        var tables = new HashSet<long>();
        long tableSpan = options.Format == ImageFormat.Qed ? options.TableSize * cs / 8 : 1; // clusters one QED L2 table maps
        await foreach (var extent in AllocationMap.EnumerateAsync(source, 0, source.Size, cancellationToken).ConfigureAwait(false))
        {
            if (!extent.Data) continue;
            long first = Math.Max(extent.Offset / cs, last + 1), end = (extent.Offset + extent.Length - 1) / cs;
            if (end < first) continue;
            clusters += end - first + 1;
            last = end;
            if (options.Format == ImageFormat.Qed)
                for (long t = first / tableSpan; t <= end / tableSpan; t++) tables.Add(t);
        }
        long size = (source.Size + 511) & ~511L;
        return Compute(size, options, clusters, _ => tables.Count);
    }

    private static void Validate(MeasureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        switch (options.Format)
        {
            case ImageFormat.Qed:
                if (!QedHeader.IsPowerOfTwoIn((ulong)options.ClusterSize, QedHeader.MinClusterSize, QedHeader.MaxClusterSize))
                    throw new ArgumentException($"QED cluster size must be a power of 2 from 4096 to 67108864 (cluster_size={options.ClusterSize})");
                if (!QedHeader.IsPowerOfTwoIn((ulong)options.TableSize, 1, QedHeader.MaxTableSize))
                    throw new ArgumentException($"QED table size must be a power of 2 from 1 to 16 (table_size={options.TableSize})");
                break;
            case ImageFormat.Qcow2:
                if (!QedHeader.IsPowerOfTwoIn((ulong)options.ClusterSize, 512, 2 << 20))
                    throw new ArgumentException($"Cluster size must be a power of two between 512 and 2M (cluster_size={options.ClusterSize})");
                break;
            case ImageFormat.Raw:
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Format, "Not an ImageFormat value.");
        }
    }

    private static SizeMeasurement Compute(long size, MeasureOptions options, long dataClusters, Func<long, long> tablesNeeded)
    {
        Validate(options);
        if (options.Format == ImageFormat.Raw)
            return new SizeMeasurement(size, size);
        long cs = options.ClusterSize;
        long sizeClusters = (size + cs - 1) / cs;
        if (options.Format == ImageFormat.Qed)
        {
            long entries = options.TableSize * cs / 8;
            long max = QedHeader.MaxImageSize((uint)cs, (uint)options.TableSize);
            if (size > max) throw new ArgumentException($"Image size {size} is too large for QED with {cs}-byte clusters and {options.TableSize}-cluster tables (at most {max})");
            long tableBytes = options.TableSize * cs;
            long fixedBytes = cs + tableBytes; // header cluster and L1 table
            long allTables = (sizeClusters + entries - 1) / entries;
            return new SizeMeasurement(fixedBytes + tablesNeeded(0) * tableBytes + dataClusters * cs,
                fixedBytes + allTables * tableBytes + sizeClusters * cs);
        }

        // qcow2: every L2 table of the virtual size, the L1 table, the header cluster, and refcount blocks and table
        // covering all of it and the data (a fixed point, since they count themselves).
        long l2Clusters = (sizeClusters * 8 + cs - 1) / cs;
        long l1Clusters = (l2Clusters * 8 + cs - 1) / cs;
        long refsPerBlock = cs * 8 / 16;
        long blocks = 0, table = 0;
        while (true)
        {
            long total = sizeClusters + 1 + l1Clusters + l2Clusters + blocks + table;
            long needBlocks = (total + refsPerBlock - 1) / refsPerBlock;
            long needTable = (needBlocks * 8 + cs - 1) / cs;
            if (needBlocks == blocks && needTable == table) break;
            blocks = needBlocks;
            table = needTable;
        }
        long metadata = (1 + l1Clusters + l2Clusters + blocks + table) * cs;
        return new SizeMeasurement(metadata + dataClusters * cs, metadata + sizeClusters * cs);
    }
}
