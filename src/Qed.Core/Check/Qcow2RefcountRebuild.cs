using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Check;

/// <summary>
/// Writes a new refcount structure (table and blocks) at the end of the file, holding exactly the references the
/// metadata makes plus the new structure's own clusters, and then points the header at it. The old table and blocks
/// are left in place, unreferenced (refcount 0 in the new structure), so nothing they overlapped is touched.
/// </summary>
/// <remarks>
/// Crash safety: the blocks and the table are written and flushed before the header names them; until then the old
/// structure is the one in force. Memory: one block at a time, the new table (at most 8 MiB, the format's limit), and
/// the references; blocks are made only for ranges that hold a referenced cluster (an empty table entry means
/// refcount 0).
/// </remarks>
internal static class Qcow2RefcountRebuild
{
    /// <summary>Rebuilds from <paramref name="references"/> (which must exclude the old refcount structure); returns
    /// the header as it now is.</summary>
    /// <exception cref="IOException">The new table would exceed the format's largest refcount table.</exception>
    public static async Task<Qcow2Header> RunAsync(IBlockStorage file, Qcow2Header header, Qcow2References references, CancellationToken ct)
    {
        int cs = header.ClusterSize, bits = (int)header.ClusterBits;
        var refcounts = await Qcow2Refcounts.LoadAsync(file, header, ct).ConfigureAwait(false); // for the width's codec
        long perBlock = refcounts.PerBlock;
        long start = Math.Max((file.Length + cs - 1) / cs, references.Highest + 1);

        var referencedBlocks = new SortedSet<long>();
        foreach (var pair in references.All) referencedBlocks.Add(pair.Key / perBlock);

        // The fixed point: the new blocks and table sit at [start, start + clusters) and must count themselves.
        SortedSet<long> blocks;
        long tableClusters = 1;
        while (true)
        {
            blocks = new SortedSet<long>(referencedBlocks);
            for (int round = 0; round < 64; round++)
            {
                int before = blocks.Count;
                for (long c = start; c < start + blocks.Count + tableClusters; c++) blocks.Add(c / perBlock);
                if (blocks.Count == before) break;
            }
            long clusters = blocks.Count + tableClusters;
            long maxIndex = Math.Max(blocks.Max, (start + clusters - 1) / perBlock);
            long needTable = Math.Max(1, ((maxIndex + 1) * 8 + cs - 1) / cs);
            if (needTable <= tableClusters) break;
            tableClusters = needTable;
        }
        if (tableClusters * cs > Qcow2Header.MaxRefcountTableBytes)
            throw new IOException($"The refcount table of '{file.Name}' cannot be rebuilt: it would need {tableClusters * cs} bytes, more than the format's {Qcow2Header.MaxRefcountTableBytes}");

        // Block i of the sorted set sits at cluster start + i; the table follows the blocks.
        var blockCluster = new Dictionary<long, long>();
        long next = start;
        foreach (long index in blocks) blockCluster[index] = next++;
        long tableCluster = next;
        long structureEnd = tableCluster + tableClusters;

        // The counts, grouped by block, in block order.
        var byBlock = new SortedDictionary<long, List<KeyValuePair<long, ulong>>>();
        foreach (var pair in references.All)
        {
            long index = pair.Key / perBlock;
            if (!byBlock.TryGetValue(index, out var list)) byBlock[index] = list = new();
            list.Add(pair);
        }
        var table = new ulong[tableClusters * cs / 8];
        foreach (long index in blocks)
        {
            ct.ThrowIfCancellationRequested();
            long at = blockCluster[index] << bits;
            var block = new Qcow2RefcountBlock(at, new byte[cs]);
            if (byBlock.TryGetValue(index, out var list))
                foreach (var (cluster, count) in list) refcounts.Set(block, cluster, count);
            long first = index * perBlock, last = first + perBlock - 1;
            for (long c = Math.Max(first, start); c <= Math.Min(last, structureEnd - 1); c++) refcounts.Set(block, c, 1);
            await file.WriteAsync(at, block.Data, ct).ConfigureAwait(false);
            table[index] = (ulong)at;
        }
        await file.WriteAsync(tableCluster << bits, Qcow2Entries.Encode(table, 0, table.Length), ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false); // the new structure is durable before the header names it

        var fields = new byte[12]; // refcount_table_offset and refcount_table_clusters are adjacent: one write
        BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)(tableCluster << bits));
        BinaryPrimitives.WriteUInt32BigEndian(fields.AsSpan(8), (uint)tableClusters);
        await file.WriteAsync(Qcow2Header.RefcountTableOffsetOffset, fields, ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false);
        return header with { RefcountTableOffset = (ulong)(tableCluster << bits), RefcountTableClusters = (uint)tableClusters };
    }
}
