using Qed.Formats.Qed;
using Qed.Storage;
using OffsetProblem = Qed.Formats.Qed.EntryValidator.OffsetProblem;

namespace Qed.Check;

/// <summary>
/// The QED consistency check: walks the L1 table and every L2 table, counts and (when asked) repairs entries that
/// cannot be followed, and counts leaked clusters. It works on the storage directly, before anything trusts the tables,
/// through the engine's <see cref="TableWalker"/> (geometry and codec), and judges every offset by
/// <see cref="EntryValidator"/>'s rules, so an entry the open refuses is one the check reports.
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
internal static class QedChecker
{
    /// <summary>Checks the QED image in <paramref name="file"/>, repairing as <paramref name="repair"/> allows.</summary>
    /// <exception cref="ImageFormatException">The header itself is invalid (nothing can be checked).</exception>
    /// <param name="file">The image file.</param>
    /// <param name="repair">What may be repaired.</param>
    /// <param name="progress">Guest bytes whose tables the first pass has walked, after each L2 table (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Cancels between tables; a repair cut off leaves an image no worse than before.</param>
    public static async Task<ImageCheckResult> CheckAsync(IBlockStorage file, CheckRepair repair, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var headerBytes = new byte[QedHeader.Size];
        await file.ReadAsync(0, headerBytes, cancellationToken).ConfigureAwait(false);
        var header = QedHeader.Parse(headerBytes);
        header.Validate(file.Length);
        if (repair != CheckRepair.None && !file.CanWrite)
            throw new InvalidOperationException($"'{file.Name}' is open read-only: it cannot be repaired");
        if (repair != CheckRepair.None && header.AutoclearFeatures != 0)
        {
            // A repair may change any table, which no auto-clear feature (the recovery record among them) follows.
            header = header with { AutoclearFeatures = 0 };
            await HeaderWriter.WriteAsync(file, header, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        var (result, _) = await RunAsync(file, header, repair, progress, cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>
    /// Checks the image file at <paramref name="path"/> as <c>qemu-img check</c> does: the format is probed unless
    /// given, the automatic check at open is skipped, and the file is opened for writing only when repairing.
    /// Returns null when the format has no consistency check (raw).
    /// </summary>
    /// <exception cref="ImageFormatException">The file is not a valid image of the format.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static async Task<ImageCheckResult?> CheckFileAsync(string path, string? format, CheckRepair repair, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
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
            format ??= (await ImageOpener.ProbeAsync(file, cancellationToken).ConfigureAwait(false)).Name();
            return format switch
            {
                "qed" => await CheckAsync(file, repair, progress, cancellationToken).ConfigureAwait(false),
                "qcow2" => await Qcow2Checker.CheckAsync(file, repair, progress, cancellationToken).ConfigureAwait(false),
                "raw" => null,
                _ => throw new NotSupportedException($"Unknown image format '{format}' (known: qed, qcow2, raw)"),
            };
        }
    }

    /// <summary>The automatic check of a read-write open with NEED_CHECK set; returns the header as it now is.</summary>
    internal static async Task<QedHeader> RepairOnOpenAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var (result, newHeader) = await RunAsync(file, header, CheckRepair.All, null, ct).ConfigureAwait(false);
        if (result.CheckErrors != 0)
            throw new ImageFormatException($"Image corrupted: the automatic check of '{file.Name}' could not read its tables", "features", 16);
        return newHeader;
    }

    private static async Task<(ImageCheckResult, QedHeader)> RunAsync(IBlockStorage file, QedHeader header, CheckRepair repair,
        IProgress<ImageProgress>? progress, CancellationToken ct)
    {
        long total = (long)header.ImageSize;
        progress?.Report(new ImageProgress(0, total));
        if (repair == CheckRepair.None)
        {
            var only = await WalkAsync(file, header, fixEntries: false, ct, progress).ConfigureAwait(false);
            progress?.Report(new ImageProgress(total, total));
            return (only.Result, header);
        }

        // Repair in steps, each leaving a consistent-or-better image if the next is interrupted: zero the entries that
        // cannot be followed; resolve overlapping tables and copy shared clusters, and zero what the tables now followed
        // hold that cannot be followed (a few rounds: a table copy shares the data clusters of its original); reclaim
        // the trailing leak if nothing was lost to a corruption; and finally count again (as qemu-img double-checks
        // after a repair) so the result describes the image as it is now.
        var messages = new List<string>();
        long corruptionsFixed = 0, leaksFixed = 0;
        var first = await WalkAsync(file, header, fixEntries: repair == CheckRepair.All, ct, progress).ConfigureAwait(false);
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
            var g = new QedGeometry(header);
            long keepClusters = Math.Max(second.HighestUsedCluster + 1, g.HeaderClusters);
            long fileClusters = g.ClusterOf(file.Length);
            if (keepClusters < fileClusters)
            {
                await file.FlushAsync(ct).ConfigureAwait(false);
                await file.SetLengthAsync(g.OffsetOf(keepClusters), ct).ConfigureAwait(false);
                leaksFixed = fileClusters - keepClusters;
                messages.Add($"Repaired: reclaimed {leaksFixed} leaked cluster(s) at the end of the file (truncated from {g.OffsetOf(fileClusters)} to {g.OffsetOf(keepClusters)} bytes)");
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
        result.MessageList.InsertRange(0, messages);

        if (result.Corruptions == 0 && result.CheckErrors == 0 && header.NeedsCheck)
        {
            await file.FlushAsync(ct).ConfigureAwait(false);
            header = header with { Features = header.Features & ~QedFeatures.NeedCheck };
            await HeaderWriter.WriteAsync(file, header, ct).ConfigureAwait(false);
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        progress?.Report(new ImageProgress(total, total));
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
    private readonly record struct Walk(ImageCheckResult Result, long HighestUsedCluster, long Lossy);

    /// <summary>
    /// One pass in QEMU's order: L1 clusters, then each L2 table and its data entries. With
    /// <paramref name="fixEntries"/>, entries that cannot be followed are zeroed (and counted as fixed).
    /// </summary>
    private static async Task<Walk> WalkAsync(IBlockStorage file, QedHeader header, bool fixEntries, CancellationToken ct,
        IProgress<ImageProgress>? progress = null)
    {
        var walker = new TableWalker(file, new QedGeometry(header));
        var g = walker.Geometry;
        ulong cs = (ulong)g.ClusterSize;
        var result = new ImageCheckResult { TotalClusters = (long)((header.ImageSize + cs - 1) / cs) };
        var used = new SparseBitmap();
        long l1First = g.ClusterOf(g.L1Offset);
        used.SetRange(l1First, g.TableClusters);
        long highest = l1First + g.TableClusters - 1;
        var l1 = await walker.ReadL1Async(ct).ConfigureAwait(false);
        bool l1Dirty = false;
        long lossy = 0;

        foreach (var table in walker.Tables(l1))
        {
            ct.ThrowIfCancellationRequested();
            int i = table.L1Index;
            // The guest range of the tables before this one is walked.
            progress?.Report(new ImageProgress(Math.Min((long)header.ImageSize, i * g.TableSpan), (long)header.ImageSize));
            ulong tableOffset = table.Offset;
            if (table.Problem != OffsetProblem.None)
            {
                string what = $"L1 entry {i} (file offset 0x{g.L1EntryFileOffset(i):x}) holds an invalid table offset 0x{tableOffset:x}";
                if (table.Problem != OffsetProblem.PastEnd) lossy++;
                if (fixEntries) { l1[i] = 0; l1Dirty = true; result.CorruptionsFixed++; result.MessageList.Add($"Repaired: {what} (entry zeroed)"); }
                else { result.Corruptions++; result.MessageList.Add($"ERROR {what}"); }
                continue;
            }
            long firstTableCluster = g.ClusterOf((long)tableOffset);
            long overlaps = used.CountSet(firstTableCluster, g.TableClusters);
            // As QEMU: an overlapping table's clusters count as used too (an L1 entry names them), but it is not followed.
            used.SetRange(firstTableCluster, g.TableClusters);
            highest = Math.Max(highest, firstTableCluster + g.TableClusters - 1);
            if (overlaps > 0)
            {
                result.Corruptions += overlaps;
                lossy += overlaps;
                result.MessageList.Add($"ERROR L1 entry {i}: the L2 table at 0x{tableOffset:x} overlaps {overlaps} cluster(s) already in use");
                continue;
            }

            ulong[] entries;
            try
            {
                entries = await walker.ReadL2Async(tableOffset, ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                result.CheckErrors++;
                result.MessageList.Add($"ERROR reading the L2 table at 0x{tableOffset:x}: {e.Message}");
                continue;
            }
            bool l2Dirty = false;
            ulong previous = 0;
            for (int j = 0; j < entries.Length; j++)
            {
                ulong entry = entries[j];
                if (entry <= EntryValidator.ZeroClusterEntry) continue;
                result.AllocatedClusters++;
                if (previous != 0 && entry != previous + cs) result.FragmentedClusters++;
                previous = entry;
                var problem = EntryValidator.DataOffsetProblem(g, entry, walker.FileEnd);
                if (problem != OffsetProblem.None)
                {
                    string what = $"L2 table {i} (at 0x{tableOffset:x}) entry {j} holds an invalid data offset 0x{entry:x}";
                    if (problem != OffsetProblem.PastEnd) lossy++;
                    if (fixEntries)
                    {
                        entries[j] = 0;
                        l2Dirty = true;
                        result.CorruptionsFixed++;
                        result.MessageList.Add($"Repaired: {what} (entry zeroed: reads through it could only fail)");
                    }
                    else
                    {
                        result.Corruptions++;
                        result.MessageList.Add($"ERROR {what}");
                    }
                    continue;
                }
                long cluster = g.ClusterOf((long)entry);
                highest = Math.Max(highest, cluster);
                if (!used.Set(cluster))
                {
                    result.Corruptions++;
                    lossy++;
                    result.MessageList.Add($"ERROR L2 table {i} entry {j}: cluster 0x{entry:x} is referenced twice or is metadata");
                }
            }
            if (l2Dirty) await walker.WriteL2Async(tableOffset, entries, ct).ConfigureAwait(false);
        }

        if (l1Dirty) await walker.WriteL1Async(l1, ct).ConfigureAwait(false);

        if (result.CheckErrors == 0)
        {
            long regular = Math.Max(0, walker.FileClusters - g.HeaderClusters);
            // Only validated offsets are marked, all in [header_size, file clusters): every set bit is a regular cluster.
            result.Leaks = Math.Max(0, regular - used.Count);
        }
        return new Walk(result, highest, lossy);
    }

    /// <summary>
    /// Resolves L2 tables that overlap the L1 table or an earlier table (in L1 order, as the walk and the image claim
    /// them): an entry whose table overlaps the L1 table is zeroed (the L1 table wins; reads through the entry could
    /// only fail, as the image never follows such a table); a table overlapping an earlier table gets a copy of the
    /// bytes it has now in new clusters at the end of the file, flushed before its L1 entry is repointed. What either
    /// overlapped is left as it was, so a crash here leaves at worst a leaked copy. Returns the clusters resolved.
    /// </summary>
    private static async Task<long> ResolveOverlappingTablesAsync(IBlockStorage file, QedHeader header, List<string> messages, CancellationToken ct)
    {
        var walker = new TableWalker(file, new QedGeometry(header));
        var g = walker.Geometry;
        long next = walker.FileEnd; // a trailing partial cluster is ignored and overwritten, as QEMU allocates
        var claimed = new SparseBitmap();
        claimed.SetRange(g.ClusterOf(g.L1Offset), g.TableClusters);
        var l1 = await walker.ReadL1Async(ct).ConfigureAwait(false);
        long resolved = 0;
        foreach (var table in walker.Tables(l1))
        {
            if (table.Problem != OffsetProblem.None) continue;
            int i = table.L1Index;
            ulong offset = table.Offset;
            long first = g.ClusterOf((long)offset);
            long overlaps = claimed.CountSet(first, g.TableClusters);
            if (overlaps == 0)
            {
                claimed.SetRange(first, g.TableClusters);
                continue;
            }
            ulong replacement = 0;
            if (g.OverlapsL1(offset, g.TableBytes))
            {
                messages.Add($"Repaired: L1 entry {i} named the table 0x{offset:x}, which overlaps the L1 table (entry zeroed: reads through it could only fail)");
            }
            else
            {
                var entries = await walker.ReadL2Async(offset, ct).ConfigureAwait(false);
                await walker.WriteL2Async((ulong)next, entries, ct).ConfigureAwait(false);
                await file.FlushAsync(ct).ConfigureAwait(false); // the copy is durable before L1 points at it
                replacement = (ulong)next;
                claimed.SetRange(g.ClusterOf(next), g.TableClusters);
                messages.Add($"Repaired: L1 entry {i} named the table 0x{offset:x}, which overlaps an earlier table; it now has its own copy at 0x{next:x}");
                next += g.TableBytes;
            }
            l1[i] = replacement;
            await walker.WriteL1EntryAsync(l1, i, ct).ConfigureAwait(false);
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
        var walker = new TableWalker(file, new QedGeometry(header));
        var g = walker.Geometry;
        long next = walker.FileEnd; // a trailing partial cluster is ignored and overwritten, as QEMU allocates
        var claimed = new SparseBitmap();
        claimed.SetRange(g.ClusterOf(g.L1Offset), g.TableClusters);
        var l1 = await walker.ReadL1Async(ct).ConfigureAwait(false);

        // Tables first; a table overlapping L1 or an earlier table is skipped (left as a corruption).
        var tables = new List<TableWalker.TableRef>();
        foreach (var table in walker.Tables(l1))
        {
            if (table.Problem != OffsetProblem.None) continue;
            long first = g.ClusterOf((long)table.Offset);
            if (claimed.CountSet(first, g.TableClusters) > 0) continue;
            claimed.SetRange(first, g.TableClusters);
            tables.Add(table);
        }

        long repointed = 0;
        byte[]? cluster = null;
        foreach (var table in tables)
        {
            var entries = await walker.ReadL2Async(table.Offset, ct).ConfigureAwait(false);
            bool dirty = false;
            for (int j = 0; j < entries.Length; j++)
            {
                ulong entry = entries[j];
                if (entry <= EntryValidator.ZeroClusterEntry || EntryValidator.DataOffsetProblem(g, entry, walker.FileEnd) != OffsetProblem.None)
                    continue;
                if (claimed.Set(g.ClusterOf((long)entry))) continue;
                cluster ??= new byte[g.ClusterSize];
                await file.ReadAsync((long)entry, cluster, ct).ConfigureAwait(false);
                await file.WriteAsync(next, cluster, ct).ConfigureAwait(false);
                claimed.Set(g.ClusterOf(next));
                entries[j] = (ulong)next;
                messages.Add($"Repaired: L2 table {table.L1Index} (at 0x{table.Offset:x}) entry {j} shared cluster 0x{entry:x}; it now has its own copy at 0x{next:x}");
                next += g.ClusterSize;
                dirty = true;
                repointed++;
            }
            if (dirty)
            {
                await file.FlushAsync(ct).ConfigureAwait(false); // the copies are durable before anything points at them
                await walker.WriteL2Async(table.Offset, entries, ct).ConfigureAwait(false);
                await file.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        return repointed;
    }
}
