using System.Buffers.Binary;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Check;

/// <summary>
/// The QED consistency check: walks the L1 table and every L2 table, counts and (when asked) repairs entries that
/// cannot be followed, and counts leaked clusters. It works on the storage directly, before anything trusts the tables.
/// </summary>
/// <remarks>
/// Counting follows qemu-img check for QED (same counters, same order of discovery) without QEMU 7.2's cluster-count
/// bug. Repairs go further than QEMU, and never discard a cluster that held data or a table before the repair:
/// <list type="bullet">
/// <item><see cref="CheckRepair.Leaks"/> only reclaims leaked clusters, by truncating the trailing run of clusters
/// nothing references (QEMU never reclaims; its <c>-r leaks</c> also zeroes invalid entries, which is its bug 6).</item>
/// <item><see cref="CheckRepair.All"/> also zeroes entries that cannot be followed (past the end of the file,
/// unaligned, inside the header), and gives each extra reference to a shared cluster (a cluster referenced twice, or a
/// data entry pointing into an L1 or L2 table) its own copy of the bytes it reads now, so nothing readable is lost.</item>
/// <item>An L2 table overlapping the L1 table is unlinked (the L1 table wins, and reads through that entry could only
/// fail); a table overlapping an earlier table gets its own copy of the bytes it has now, as shared data clusters do.
/// Neither changes a byte of what it overlapped.</item>
/// <item>Leaked clusters are reclaimed only when every problem found was a leak or an entry wholly past the end of the
/// file (what a crash leaves: it points at nothing). Any other corruption may have cut the only reference to a table or
/// to data (an L1 entry overwritten with the L1 table's offset orphans the real L2 table and its data), so then leaked
/// clusters are kept for a person to recover, and reported.</item>
/// </list>
/// Memory is bounded by the tables in the file, never by the virtual size.
/// </remarks>
public static class QedChecker
{
    /// <summary>Checks the QED image in <paramref name="file"/>, repairing as <paramref name="repair"/> allows.</summary>
    /// <exception cref="ImageFormatException">The header itself is invalid (nothing can be checked).</exception>
    public static async Task<QedCheckResult> CheckAsync(IBlockStorage file, CheckRepair repair, CancellationToken cancellationToken = default)
    {
        var headerBytes = new byte[QedHeader.Size];
        await file.ReadAsync(0, headerBytes, cancellationToken).ConfigureAwait(false);
        var header = QedHeader.Parse(headerBytes);
        header.Validate(file.Length);
        if (repair != CheckRepair.None && !file.CanWrite)
            throw new InvalidOperationException($"'{file.Name}' is open read-only: it cannot be repaired");
        var (result, _) = await RunAsync(file, header, repair, cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>
    /// Checks the image file at <paramref name="path"/> as <c>qemu-img check</c> does: the format is probed unless
    /// given, the automatic check at open is skipped, and the file is opened for writing only when repairing.
    /// Returns null when the format has no consistency check (raw).
    /// </summary>
    /// <exception cref="ImageFormatException">The file is not a valid image of the format.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static async Task<QedCheckResult?> CheckFileAsync(string path, string? format, CheckRepair repair, CancellationToken cancellationToken = default)
    {
        FileStorage file;
        try
        {
            file = FileStorage.Open(path, writable: repair != CheckRepair.None);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory", path, e);
        }
        await using (file.ConfigureAwait(false))
        {
            format ??= await ImageOpener.ProbeAsync(file, cancellationToken).ConfigureAwait(false);
            return format switch
            {
                "qed" => await CheckAsync(file, repair, cancellationToken).ConfigureAwait(false),
                "raw" => null,
                _ => throw new NotSupportedException($"Unknown image format '{format}' (known: qed, raw)"),
            };
        }
    }

    /// <summary>The automatic check of a read-write open with NEED_CHECK set; returns the header as it now is.</summary>
    internal static async Task<QedHeader> RepairOnOpenAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var (result, newHeader) = await RunAsync(file, header, CheckRepair.All, ct).ConfigureAwait(false);
        if (result.CheckErrors != 0)
            throw new ImageFormatException($"Image corrupted: the automatic check of '{file.Name}' could not read its tables", "features", 16);
        return newHeader;
    }

    private static async Task<(QedCheckResult, QedHeader)> RunAsync(IBlockStorage file, QedHeader header, CheckRepair repair, CancellationToken ct)
    {
        if (repair == CheckRepair.None)
            return ((await WalkAsync(file, header, fixEntries: false, ct).ConfigureAwait(false)).Result, header);

        // Repair in steps, each leaving a consistent-or-better image if the next is interrupted: zero the entries that
        // cannot be followed; resolve overlapping tables and copy shared clusters, and zero what the tables now followed
        // hold that cannot be followed (a few rounds: a table copy shares the data clusters of its original); reclaim
        // the trailing leak if nothing was lost to a corruption; and finally count again (as qemu-img double-checks
        // after a repair) so the result describes the image as it is now.
        var messages = new List<string>();
        long corruptionsFixed = 0, leaksFixed = 0;
        var first = await WalkAsync(file, header, fixEntries: repair == CheckRepair.All, ct).ConfigureAwait(false);
        bool lossy = first.Lossy > 0 || first.Result.CheckErrors > 0;
        var walk = first;
        for (int round = 0; ; round++)
        {
            corruptionsFixed += walk.Result.CorruptionsFixed;
            messages.AddRange(walk.Result.Messages.Where(m => m.StartsWith("Repaired", StringComparison.Ordinal)));
            if (repair != CheckRepair.All || walk.Result.Corruptions == 0 || walk.Result.CheckErrors != 0 || round == MaxRepairRounds) break;
            long resolved = await ResolveOverlappingTablesAsync(file, header, messages, ct).ConfigureAwait(false);
            resolved += await CopySharedClustersAsync(file, header, messages, ct).ConfigureAwait(false);
            if (resolved == 0) break;
            corruptionsFixed += resolved;
            walk = await WalkAsync(file, header, fixEntries: true, ct).ConfigureAwait(false);
        }

        if (messages.Count > MaxRepairMessages)
        {
            int more = messages.Count - MaxRepairMessages;
            messages.RemoveRange(MaxRepairMessages, more);
            messages.Add($"Repaired: {more} more entries (not listed)");
        }

        var second = await WalkAsync(file, header, fixEntries: false, ct).ConfigureAwait(false);
        if (second.Result.CheckErrors == 0 && second.Result.Leaks > 0 && !lossy)
        {
            long cs = header.ClusterSize;
            long keepClusters = Math.Max(second.HighestUsedCluster + 1, header.HeaderSize);
            long fileClusters = file.Length / cs;
            if (keepClusters < fileClusters)
            {
                await file.FlushAsync(ct).ConfigureAwait(false);
                await file.SetLengthAsync(keepClusters * cs, ct).ConfigureAwait(false);
                leaksFixed = fileClusters - keepClusters;
                messages.Add($"Repaired: reclaimed {leaksFixed} leaked cluster(s) at the end of the file (truncated from {fileClusters * cs} to {keepClusters * cs} bytes)");
                second = await WalkAsync(file, header, fixEntries: false, ct).ConfigureAwait(false);
            }
        }
        if (second.Result.Leaks > 0)
            messages.Add(lossy
                ? $"Not repaired: {second.Result.Leaks} leaked cluster(s) kept: the image had corruptions, and a leaked cluster may hold a table or data that only a corrupted entry pointed at ('qed check -r leaks' reclaims those at the end once nothing is missing)"
                : $"Not repaired: {second.Result.Leaks} leaked cluster(s) before the last used cluster (QED has no free-space map to reuse them; 'qed convert' compacts the image)");
        if (second.Result.Corruptions > 0)
            messages.Add(repair == CheckRepair.All
                ? $"Not repaired: {second.Result.Corruptions} corruption(s) left after {MaxRepairRounds} rounds of repair"
                : $"Not repaired: {second.Result.Corruptions} corruption(s); use -r all");

        var result = second.Result;
        result.CorruptionsFixed = corruptionsFixed;
        result.LeaksFixed = leaksFixed;
        result.Messages.InsertRange(0, messages);

        if (result.Corruptions == 0 && result.CheckErrors == 0 && header.NeedsCheck)
        {
            await file.FlushAsync(ct).ConfigureAwait(false);
            header = header with { Features = header.Features & ~QedFeatures.NeedCheck };
            var bytes = new byte[QedHeader.Size];
            header.WriteTo(bytes);
            await file.WriteAsync(0, bytes, ct).ConfigureAwait(false);
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        return (result, header);
    }

    /// <summary>Rounds of table resolution and cluster copying: each can expose entries in tables it made followable.</summary>
    private const int MaxRepairRounds = 4;

    /// <summary>Repairs listed one by one; a table copied from data bytes can make thousands, which are counted instead.</summary>
    private const int MaxRepairMessages = 100;

    /// <summary>
    /// One walk's findings. <paramref name="Lossy"/> counts the problems (found, fixed or not) other than entries wholly
    /// past the end of the file: those a reference to existing clusters may have been lost to.
    /// </summary>
    private readonly record struct Walk(QedCheckResult Result, long HighestUsedCluster, long Lossy);

    /// <summary>
    /// One pass in QEMU's order: L1 clusters, then each L2 table and its data entries. With
    /// <paramref name="fixEntries"/>, entries that cannot be followed are zeroed (and counted as fixed).
    /// </summary>
    private static async Task<Walk> WalkAsync(IBlockStorage file, QedHeader header, bool fixEntries, CancellationToken ct)
    {
        long cs = header.ClusterSize;
        int tableBytes = (int)(header.ClusterSize * header.TableSize);
        int entries = tableBytes / 8;
        long fileClusters = file.Length / cs;
        var result = new QedCheckResult { TotalClusters = (long)((header.ImageSize + (ulong)cs - 1) / (ulong)cs) };
        var used = new SparseBitmap();
        long highest = -1;

        long l1Offset = (long)header.L1TableOffset;
        for (long c = 0; c < header.TableSize; c++) used.Set(l1Offset / cs + c);
        highest = l1Offset / cs + header.TableSize - 1;
        var l1 = await QedImage.ReadTableAsync(file, l1Offset, tableBytes, ct).ConfigureAwait(false);
        bool l1Dirty = false;
        var l2Raw = new byte[tableBytes];
        long lossy = 0;

        for (int i = 0; i < l1.Length; i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong tableOffset = l1[i];
            if (tableOffset == 0) continue;
            if (!header.IsValidTableOffset(tableOffset, fileClusters))
            {
                string what = $"L1 entry {i} (file offset 0x{l1Offset + 8L * i:x}) holds an invalid table offset 0x{tableOffset:x}";
                if (!WhollyPastEnd(header, tableOffset, fileClusters)) lossy++;
                if (fixEntries) { l1[i] = 0; l1Dirty = true; result.CorruptionsFixed++; result.Messages.Add($"Repaired: {what} (entry zeroed)"); }
                else { result.Corruptions++; result.Messages.Add($"ERROR {what}"); }
                continue;
            }
            long firstTableCluster = (long)(tableOffset / (ulong)cs);
            long overlaps = 0;
            for (long c = 0; c < header.TableSize; c++)
                if (used.Get(firstTableCluster + c)) overlaps++;
            if (overlaps > 0)
            {
                // As QEMU: the table's clusters count as used (an L1 entry names them), but the table is not followed.
                for (long c = 0; c < header.TableSize; c++) used.Set(firstTableCluster + c);
                highest = Math.Max(highest, firstTableCluster + header.TableSize - 1);
                result.Corruptions += overlaps;
                lossy += overlaps;
                result.Messages.Add($"ERROR L1 entry {i}: the L2 table at 0x{tableOffset:x} overlaps {overlaps} cluster(s) already in use");
                continue;
            }
            for (long c = 0; c < header.TableSize; c++) used.Set(firstTableCluster + c);
            highest = Math.Max(highest, firstTableCluster + header.TableSize - 1);

            try
            {
                await file.ReadAsync((long)tableOffset, l2Raw, ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                result.CheckErrors++;
                result.Messages.Add($"ERROR reading the L2 table at 0x{tableOffset:x}: {e.Message}");
                continue;
            }
            bool l2Dirty = false;
            ulong previous = 0;
            for (int j = 0; j < entries; j++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(l2Raw.AsSpan(j * 8));
                if (entry <= 1) continue;
                result.AllocatedClusters++;
                if (previous != 0 && entry != previous + (ulong)cs) result.FragmentedClusters++;
                previous = entry;
                ulong cluster = entry / (ulong)cs;
                if (entry % (ulong)cs != 0 || cluster < header.HeaderSize || cluster >= (ulong)fileClusters)
                {
                    string what = $"L2 table {i} (at 0x{tableOffset:x}) entry {j} holds an invalid data offset 0x{entry:x}";
                    if (!WhollyPastEnd(header, entry, fileClusters)) lossy++;
                    if (fixEntries)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(l2Raw.AsSpan(j * 8), 0);
                        l2Dirty = true;
                        result.CorruptionsFixed++;
                        result.Messages.Add($"Repaired: {what} (entry zeroed: reads through it could only fail)");
                    }
                    else
                    {
                        result.Corruptions++;
                        result.Messages.Add($"ERROR {what}");
                    }
                    continue;
                }
                highest = Math.Max(highest, (long)cluster);
                if (!used.Set((long)cluster))
                {
                    result.Corruptions++;
                    lossy++;
                    result.Messages.Add($"ERROR L2 table {i} entry {j}: cluster 0x{entry:x} is referenced twice or is metadata");
                }
            }
            if (l2Dirty) await file.WriteAsync((long)tableOffset, l2Raw, ct).ConfigureAwait(false);
        }

        if (l1Dirty)
        {
            var raw = new byte[tableBytes];
            for (int i = 0; i < l1.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(i * 8), l1[i]);
            await file.WriteAsync(l1Offset, raw, ct).ConfigureAwait(false);
        }

        if (result.CheckErrors == 0)
        {
            long regular = Math.Max(0, fileClusters - header.HeaderSize);
            // Only validated offsets are marked, all in [header_size, file clusters): every set bit is a regular cluster.
            result.Leaks = Math.Max(0, regular - used.Count);
        }
        return new Walk(result, highest, lossy);
    }

    /// <summary>
    /// Whether an offset is aligned, past the header and wholly past the file's last whole cluster: what an entry
    /// written ahead of a file extension that a crash lost looks like. Zeroing it orphans nothing in the file.
    /// </summary>
    private static bool WhollyPastEnd(QedHeader header, ulong offset, long fileClusters) =>
        offset % header.ClusterSize == 0 && offset / header.ClusterSize >= header.HeaderSize && offset / header.ClusterSize >= (ulong)fileClusters;

    /// <summary>
    /// Resolves L2 tables that overlap the L1 table or an earlier table (in L1 order, as the walk and the image claim
    /// them): an entry whose table overlaps the L1 table is zeroed (the L1 table wins; reads through the entry could
    /// only fail, as the image never follows such a table); a table overlapping an earlier table gets a copy of the
    /// bytes it has now in new clusters at the end of the file, flushed before its L1 entry is repointed. What either
    /// overlapped is left as it was, so a crash here leaves at worst a leaked copy. Returns the clusters resolved.
    /// </summary>
    private static async Task<long> ResolveOverlappingTablesAsync(IBlockStorage file, QedHeader header, List<string> messages, CancellationToken ct)
    {
        long cs = header.ClusterSize;
        int tableBytes = (int)(header.ClusterSize * header.TableSize);
        long fileClusters = file.Length / cs;
        long next = fileClusters * cs; // a trailing partial cluster is ignored and overwritten, as QEMU allocates
        long l1Offset = (long)header.L1TableOffset;
        long l1First = l1Offset / cs;
        var claimed = new SparseBitmap();
        for (long c = 0; c < header.TableSize; c++) claimed.Set(l1First + c);
        var l1 = await QedImage.ReadTableAsync(file, l1Offset, tableBytes, ct).ConfigureAwait(false);
        long resolved = 0;
        byte[]? table = null;
        var entry = new byte[8];
        for (int i = 0; i < l1.Length; i++)
        {
            ulong offset = l1[i];
            if (offset == 0 || !header.IsValidTableOffset(offset, fileClusters)) continue;
            long first = (long)(offset / (ulong)cs);
            long overlaps = 0;
            for (long c = 0; c < header.TableSize; c++)
                if (claimed.Get(first + c)) overlaps++;
            if (overlaps == 0)
            {
                for (long c = 0; c < header.TableSize; c++) claimed.Set(first + c);
                continue;
            }
            ulong replacement = 0;
            if (first < l1First + header.TableSize && first + header.TableSize > l1First)
            {
                messages.Add($"Repaired: L1 entry {i} named the table 0x{offset:x}, which overlaps the L1 table (entry zeroed: reads through it could only fail)");
            }
            else
            {
                table ??= new byte[tableBytes];
                await file.ReadAsync((long)offset, table, ct).ConfigureAwait(false);
                await file.WriteAsync(next, table, ct).ConfigureAwait(false);
                await file.FlushAsync(ct).ConfigureAwait(false); // the copy is durable before L1 points at it
                replacement = (ulong)next;
                for (long c = 0; c < header.TableSize; c++) claimed.Set(next / cs + c);
                messages.Add($"Repaired: L1 entry {i} named the table 0x{offset:x}, which overlaps an earlier table; it now has its own copy at 0x{next:x}");
                next += tableBytes;
            }
            BinaryPrimitives.WriteUInt64LittleEndian(entry, replacement);
            await file.WriteAsync(l1Offset + 8L * i, entry, ct).ConfigureAwait(false);
            await file.FlushAsync(ct).ConfigureAwait(false);
            resolved += overlaps;
        }
        return resolved;
    }

    /// <summary>
    /// Gives every extra reference to a cluster its own copy. Tables claim their clusters first (a table's bytes are
    /// what its readers expect), then each data entry claims its cluster; an entry whose cluster is already claimed
    /// gets a new cluster at the end of the file holding the bytes it reads now. Each copy is flushed before the entry
    /// is repointed, so a crash here leaves at worst a leaked copy. Returns the number of entries repointed.
    /// </summary>
    private static async Task<long> CopySharedClustersAsync(IBlockStorage file, QedHeader header, List<string> messages, CancellationToken ct)
    {
        long cs = header.ClusterSize;
        int tableBytes = (int)(header.ClusterSize * header.TableSize);
        int entries = tableBytes / 8;
        long fileClusters = file.Length / cs;
        long next = fileClusters * cs; // a trailing partial cluster is ignored and overwritten, as QEMU allocates
        var claimed = new SparseBitmap();
        long l1Offset = (long)header.L1TableOffset;
        for (long c = 0; c < header.TableSize; c++) claimed.Set(l1Offset / cs + c);
        var l1 = await QedImage.ReadTableAsync(file, l1Offset, tableBytes, ct).ConfigureAwait(false);

        // Tables first; a table overlapping L1 or an earlier table is skipped (left as a corruption).
        var tables = new List<int>();
        for (int i = 0; i < l1.Length; i++)
        {
            ulong offset = l1[i];
            if (offset == 0 || !header.IsValidTableOffset(offset, fileClusters)) continue;
            long first = (long)(offset / (ulong)cs);
            bool overlaps = false;
            for (long c = 0; c < header.TableSize; c++) overlaps |= claimed.Get(first + c);
            if (overlaps) continue;
            for (long c = 0; c < header.TableSize; c++) claimed.Set(first + c);
            tables.Add(i);
        }

        long repointed = 0;
        var raw = new byte[tableBytes];
        byte[]? cluster = null;
        foreach (int i in tables)
        {
            long tableOffset = (long)l1[i];
            await file.ReadAsync(tableOffset, raw, ct).ConfigureAwait(false);
            bool dirty = false;
            for (int j = 0; j < entries; j++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(j * 8));
                if (entry <= 1 || entry % (ulong)cs != 0 || entry / (ulong)cs < header.HeaderSize || entry / (ulong)cs >= (ulong)fileClusters)
                    continue;
                if (claimed.Set((long)(entry / (ulong)cs))) continue;
                cluster ??= new byte[cs];
                await file.ReadAsync((long)entry, cluster, ct).ConfigureAwait(false);
                await file.WriteAsync(next, cluster, ct).ConfigureAwait(false);
                claimed.Set(next / cs);
                BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(j * 8), (ulong)next);
                messages.Add($"Repaired: L2 table {i} (at 0x{tableOffset:x}) entry {j} shared cluster 0x{entry:x}; it now has its own copy at 0x{next:x}");
                next += cs;
                dirty = true;
                repointed++;
            }
            if (dirty)
            {
                await file.FlushAsync(ct).ConfigureAwait(false); // the copies are durable before anything points at them
                await file.WriteAsync(tableOffset, raw, ct).ConfigureAwait(false);
                await file.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        return repointed;
    }
}
