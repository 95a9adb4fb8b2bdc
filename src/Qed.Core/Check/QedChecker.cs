using System.Buffers.Binary;
using Qed.Format;
using Qed.Storage;

namespace Qed.Check;

/// <summary>
/// The QED consistency check: walks the L1 table and every L2 table, counts and (when asked) repairs entries that
/// cannot be followed, and counts leaked clusters. It works on the storage directly, before anything trusts the tables.
/// </summary>
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
        var (result, _) = await RunAsync(file, header, repair, cancellationToken).ConfigureAwait(false);
        return result;
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
        bool fix = repair != CheckRepair.None;
        long cs = header.ClusterSize;
        int tableBytes = (int)(header.ClusterSize * header.TableSize);
        int entries = tableBytes / 8;
        long fileClusters = file.Length / cs;
        var result = new QedCheckResult { TotalClusters = (long)((header.ImageSize + (ulong)cs - 1) / (ulong)cs) };
        var used = new SparseBitmap();

        long l1Offset = (long)header.L1TableOffset;
        for (long c = 0; c < header.TableSize; c++) used.Set(l1Offset / cs + c);
        var l1 = await QedImage.ReadTableAsync(file, l1Offset, tableBytes, ct).ConfigureAwait(false);
        bool l1Dirty = false;
        var l2Raw = new byte[tableBytes];

        for (int i = 0; i < l1.Length; i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong tableOffset = l1[i];
            if (tableOffset == 0) continue;
            if (!header.IsValidTableOffset(tableOffset, fileClusters))
            {
                string what = $"L1 entry {i} holds an invalid table offset 0x{tableOffset:x}";
                if (fix) { l1[i] = 0; l1Dirty = true; result.CorruptionsFixed++; result.Messages.Add($"Repaired: {what}"); }
                else { result.Corruptions++; result.Messages.Add($"ERROR {what}"); }
                continue;
            }
            long firstTableCluster = (long)(tableOffset / (ulong)cs);
            long overlaps = 0;
            for (long c = 0; c < header.TableSize; c++)
                if (used.Get(firstTableCluster + c)) overlaps++;
            if (overlaps > 0)
            {
                result.Corruptions += overlaps;
                result.Messages.Add($"ERROR L1 entry {i}: the L2 table at 0x{tableOffset:x} overlaps {overlaps} cluster(s) already in use");
                continue;
            }
            for (long c = 0; c < header.TableSize; c++) used.Set(firstTableCluster + c);

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
                    if (fix)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(l2Raw.AsSpan(j * 8), 0);
                        l2Dirty = true;
                        result.CorruptionsFixed++;
                        result.Messages.Add($"Repaired: {what}");
                    }
                    else
                    {
                        result.Corruptions++;
                        result.Messages.Add($"ERROR {what}");
                    }
                    continue;
                }
                if (!used.Set((long)cluster))
                {
                    result.Corruptions++;
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

        if (fix && result.Corruptions == 0 && result.CheckErrors == 0 && header.NeedsCheck)
        {
            await file.FlushAsync(ct).ConfigureAwait(false);
            header = header with { Features = header.Features & ~QedFeatures.NeedCheck };
            var bytes = new byte[QedHeader.Size];
            header.WriteTo(bytes);
            await file.WriteAsync(0, bytes, ct).ConfigureAwait(false);
        }
        if (fix) await file.FlushAsync(ct).ConfigureAwait(false);
        return (result, header);
    }
}
