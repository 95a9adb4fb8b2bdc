using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Check;

/// <summary>
/// The qcow2 consistency check, as <c>qemu-img check</c> on qcow2: rebuilds every cluster's references from the
/// metadata, compares them with the refcounts, checks the copied flags, and reports qemu-img's counters (leaks,
/// corruptions, check errors, allocated, fragmented and compressed clusters, the image end offset). It reads the
/// file directly, before anything trusts the tables, with the image's own refcount width (1 to 64 bits).
/// </summary>
/// <remarks>
/// Repairs, in steps that each leave the image no worse if the next is interrupted:
/// <list type="bullet">
/// <item><see cref="CheckRepair.All"/> first gives every active entry that cannot be followed what it reads now:
/// a data entry that is unaligned, past the end of the file or inside other metadata gets a new cluster holding the
/// bytes it names (zeroes past the end, as reads return); an L1 entry naming a cluster of other metadata gets a new
/// L2 table holding that cluster's bytes; an L1 entry past the end of the file is cleared (it reads as an empty
/// table); a preallocated zero cluster that cannot be followed becomes a plain zero cluster. Copies are durable
/// before an entry names them. qemu-img leaves most of these as corruptions; nothing readable is lost here.</item>
/// <item>Refcounts: <see cref="CheckRepair.Leaks"/> lowers refcounts that are too high; <see cref="CheckRepair.All"/>
/// also raises those that are too low, in place. When a used cluster has refcount 0 or a refcount block cannot be
/// followed, the whole structure is rebuilt at the end of the file (<see cref="Qcow2RefcountRebuild"/>; only with
/// <see cref="CheckRepair.All"/>, as qemu-img, which fails a <c>-r leaks</c> check then).</item>
/// <item>Copied flags are corrected once the refcounts are (with <c>-r leaks</c>, only when nothing else is
/// wrong), and a clean image loses its dirty and corrupt bits.</item>
/// </list>
/// Lowering a refcount never discards the cluster's bytes (qemu-img punches a hole): a leaked cluster may be the
/// only copy of data a corrupted entry lost, and it stays readable in the file until the image reuses it.
/// </remarks>
internal static class Qcow2Checker
{
    /// <summary>Rounds of entry repairs: a copied table can hold entries that need copies of their own.</summary>
    private const int MaxEntryRounds = 4;

    /// <summary>Checks the qcow2 image in <paramref name="file"/>, repairing as <paramref name="repair"/> allows.</summary>
    /// <exception cref="ImageFormatException">The header is invalid (nothing can be checked).</exception>
    /// <exception cref="NotSupportedException">The image uses a feature this library cannot check (encryption,
    /// an external data file, subclusters, zstd).</exception>
    /// <param name="file">The image file.</param>
    /// <param name="repair">What may be repaired.</param>
    /// <param name="progress">Reported at the start (0) and once the check is done (the guest size); qcow2's passes
    /// are not broken down further.</param>
    /// <param name="cancellationToken">Cancels the check; a repair cut off leaves an image no worse than before.</param>
    public static async Task<ImageCheckResult> CheckAsync(IBlockStorage file, CheckRepair repair, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var result = await CheckCoreAsync(file, repair, progress, cancellationToken).ConfigureAwait(false);
        if (progress != null && result.Failure is null)
        {
            long size = (long)Qcow2Header.Parse(await ReadHeadAsync(file, cancellationToken).ConfigureAwait(false)).Size;
            progress.Report(new ImageProgress(size, size));
        }
        return result;
    }

    private static async Task<byte[]> ReadHeadAsync(IBlockStorage file, CancellationToken ct)
    {
        var head = new byte[Qcow2Header.V3WrittenLength];
        await file.ReadAsync(0, head, ct).ConfigureAwait(false);
        return head;
    }

    private static async Task<ImageCheckResult> CheckCoreAsync(IBlockStorage file, CheckRepair repair, IProgress<ImageProgress>? progress,
        CancellationToken cancellationToken)
    {
        var ct = cancellationToken;
        if (file.Length < Qcow2Header.V2Length)
            throw new ImageFormatException($"The file is {file.Length} bytes, too short for a qcow2 header", "magic", 0);
        var head = new byte[Qcow2Header.V3WrittenLength];
        await file.ReadAsync(0, head, ct).ConfigureAwait(false);
        var header = Qcow2Header.Parse(head);
        header.Validate(file.Length);
        if (repair != CheckRepair.None && !file.CanWrite)
            throw new InvalidOperationException($"'{file.Name}' is open read-only: it cannot be repaired");
        progress?.Report(new ImageProgress(0, (long)header.Size));

        var first = await Qcow2CheckScan.RunAsync(file, header, forRebuild: false, ct).ConfigureAwait(false);
        if (repair == CheckRepair.None) return first.Result;

        var messages = new List<string>(first.Result.Messages);
        long corruptionsFixed = 0, leaksFixed = 0;
        var scan = first;
        if (repair == CheckRepair.All)
        {
            var originals = new Dictionary<long, byte[]>(); // clusters of tables as they were before the repair changed them
            for (int round = 0; round < MaxEntryRounds && scan.EntryRepairs.Count > 0; round++)
            {
                corruptionsFixed += await RepairEntriesAsync(file, header, scan.EntryRepairs, originals, messages, ct).ConfigureAwait(false);
                scan = await Qcow2CheckScan.RunAsync(file, header, forRebuild: false, ct).ConfigureAwait(false);
            }
        }

        // A rebuild needs no old refcount, so refcounts that cannot be read (the only check errors) do not stop it.
        if (scan.NeedsRebuild || (repair == CheckRepair.All && scan.BlockOutsideImage))
        {
            if (repair != CheckRepair.All)
            {
                messages.Add("ERROR need to rebuild refcount structures");
                var failed = scan.Result;
                failed.CheckErrors++;
                failed.Failure = "Input/output error";
                failed.CorruptionsFixed = corruptionsFixed;
                failed.MessageList.Clear();
                failed.MessageList.AddRange(messages);
                return failed;
            }
            messages.Add("Rebuilding refcount structure");
            var references = (await Qcow2CheckScan.RunAsync(file, header, forRebuild: true, ct).ConfigureAwait(false)).References;
            header = await Qcow2RefcountRebuild.RunAsync(file, header, references, ct).ConfigureAwait(false);
            corruptionsFixed += scan.RefcountCorruptions;
            leaksFixed += scan.Result.Leaks;
        }
        else if (scan.Result.CheckErrors == 0)
        {
            var (leaks, corruptions) = await RepairRefcountsAsync(file, scan, repair, messages, ct).ConfigureAwait(false);
            leaksFixed += leaks;
            corruptionsFixed += corruptions;
        }

        var after = await Qcow2CheckScan.RunAsync(file, header, forRebuild: false, ct).ConfigureAwait(false);
        long copiedOnly = after.CopiedFixes.Count;
        bool safe = after.Result.CheckErrors == 0 && after.Result.Leaks == 0 && after.Result.Corruptions == copiedOnly;
        if (after.CopiedFixes.Count > 0 && (repair == CheckRepair.All || safe))
        {
            foreach (var fix in after.CopiedFixes)
            {
                await WriteEntryAsync(file, fix.EntryOffset, fix.Corrected, ct).ConfigureAwait(false);
                messages.Add($"Repairing {fix.What}");
            }
            await file.FlushAsync(ct).ConfigureAwait(false);
            corruptionsFixed += after.CopiedFixes.Count;
        }

        var final = await Qcow2CheckScan.RunAsync(file, header, forRebuild: false, ct).ConfigureAwait(false);
        var result = final.Result;
        if (result.CheckErrors == 0 && result.Corruptions == 0 && header.Version >= 3
            && (header.IncompatibleFeatures & (Qcow2IncompatibleFeatures.Dirty | Qcow2IncompatibleFeatures.Corrupt)) != 0)
        {
            var bits = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(bits, (ulong)(header.IncompatibleFeatures & ~(Qcow2IncompatibleFeatures.Dirty | Qcow2IncompatibleFeatures.Corrupt)));
            await file.WriteAsync(Qcow2Header.IncompatibleOffset, bits, ct).ConfigureAwait(false);
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        result.CorruptionsFixed = corruptionsFixed;
        result.LeaksFixed = leaksFixed;
        if (corruptionsFixed == 0 && leaksFixed == 0) result.MessageList.Clear(); // nothing changed: the first pass said it all
        result.MessageList.InsertRange(0, messages);
        return result;
    }

    /// <summary>
    /// Gives each entry the scan could not leave its repair (see the remarks): copies first, flushed, then the
    /// entries that name them, flushed. Returns the entries repaired.
    /// </summary>
    private static async Task<long> RepairEntriesAsync(IBlockStorage file, Qcow2Header header, List<Qcow2EntryRepair> repairs,
        Dictionary<long, byte[]> originals, List<string> messages, CancellationToken ct)
    {
        int cs = header.ClusterSize;
        long next = (file.Length + cs - 1) / cs * cs; // after a partial last cluster, which may hold referenced bytes
        var entries = new List<(long At, ulong Value, string Message)>();
        var bytes = new byte[cs];
        foreach (var r in repairs)
        {
            ct.ThrowIfCancellationRequested();
            long source = (long)(r.Entry & Qcow2Entries.OffsetMask);
            string where = r.Fix is Qcow2EntryFix.CopyTable or Qcow2EntryFix.ClearL1 ? "L1" : "L2";
            string what = $"{where} entry at file offset 0x{r.EntryOffset:x} held 0x{r.Entry:x}, which {r.Why}";
            switch (r.Fix)
            {
                case Qcow2EntryFix.ClearL1:
                    entries.Add((r.EntryOffset, 0, $"Repairing {what} (entry cleared: it read as an empty table)"));
                    break;
                case Qcow2EntryFix.ClearCopied:
                    entries.Add((r.EntryOffset, r.Entry & ~Qcow2Entries.CopiedFlag, $"Repairing {what} (copied flag cleared)"));
                    break;
                case Qcow2EntryFix.PlainZero:
                    entries.Add((r.EntryOffset, Qcow2Entries.ZeroFlag, $"Repairing {what} (now a plain zero cluster: it read as zeroes)"));
                    break;
                default:
                    await ReadOriginalAsync(file, source, bytes, originals, ct).ConfigureAwait(false);
                    await file.WriteAsync(next, bytes, ct).ConfigureAwait(false);
                    entries.Add((r.EntryOffset, (ulong)next | Qcow2Entries.CopiedFlag,
                        $"Repairing {what} (it now has its own copy of those bytes at 0x{next:x})"));
                    next += cs;
                    break;
            }
        }
        await file.FlushAsync(ct).ConfigureAwait(false); // copies are durable before anything names them
        foreach (var (at, value, message) in entries)
        {
            long cluster = at / cs * cs;
            if (!originals.ContainsKey(cluster))
            {
                var before = new byte[cs];
                await file.ReadAsync(cluster, before, ct).ConfigureAwait(false);
                originals[cluster] = before;
            }
            await WriteEntryAsync(file, at, value, ct).ConfigureAwait(false);
            messages.Add(message);
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        return entries.Count;
    }

    /// <summary>
    /// Reads <paramref name="buffer"/> at <paramref name="offset"/> as the file was before this repair changed any
    /// table: an entry copied in a later round (one inside a table copied from metadata) gets the bytes it read
    /// before the repair, not the repaired entries. Past the end of the file reads as zeroes.
    /// </summary>
    private static async Task ReadOriginalAsync(IBlockStorage file, long offset, byte[] buffer, Dictionary<long, byte[]> originals, CancellationToken ct)
    {
        await file.ReadAsync(offset, buffer, ct).ConfigureAwait(false);
        int cs = buffer.Length;
        for (long cluster = offset / cs * cs; cluster < offset + cs; cluster += cs)
        {
            if (!originals.TryGetValue(cluster, out var before)) continue;
            long from = Math.Max(offset, cluster), to = Math.Min(offset + cs, cluster + cs);
            before.AsSpan((int)(from - cluster), (int)(to - from)).CopyTo(buffer.AsSpan((int)(from - offset)));
        }
    }

    /// <summary>Sets mismatched refcounts in place (all covered by a block: a missing one means a rebuild).</summary>
    private static async Task<(long Leaks, long Corruptions)> RepairRefcountsAsync(IBlockStorage file, Qcow2CheckScan scan,
        CheckRepair repair, List<string> messages, CancellationToken ct)
    {
        var refcounts = scan.Refcounts;
        var blocks = new Dictionary<long, Qcow2RefcountBlock>();
        long leaks = 0, corruptions = 0;
        foreach (var m in scan.Mismatches)
        {
            bool leak = m.Refcount > m.References;
            if (!leak && repair != CheckRepair.All) continue;
            long index = refcounts.BlockIndexOf(m.Cluster);
            if (!blocks.TryGetValue(index, out var block))
            {
                if (!scan.TryBlockOffset(index, out long offset) || offset == 0) continue;
                var data = new byte[refcounts.PerBlock * refcounts.Bits / 8];
                await file.ReadAsync(offset, data, ct).ConfigureAwait(false);
                blocks[index] = block = new Qcow2RefcountBlock(offset, data);
            }
            refcounts.Set(block, m.Cluster, m.References);
            messages.Add($"Repairing cluster {m.Cluster} refcount={m.Refcount} reference={m.References}");
            if (leak) leaks++;
            else corruptions++;
        }
        foreach (var block in blocks.Values)
            await file.WriteAsync(block.FileOffset, block.Data, ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false);
        return (leaks, corruptions);
    }

    private static async Task WriteEntryAsync(IBlockStorage file, long at, ulong value, CancellationToken ct)
    {
        var raw = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(raw, value);
        await file.WriteAsync(at, raw, ct).ConfigureAwait(false);
    }
}
