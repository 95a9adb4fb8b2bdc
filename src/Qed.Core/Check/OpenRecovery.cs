using Qed.Formats.Qed;
using Qed.Storage;
using OffsetProblem = Qed.Formats.Qed.EntryValidator.OffsetProblem;

namespace Qed.Check;

/// <summary>How a read-write open brought an image marked NEED_CHECK back to a consistent state.</summary>
internal enum RecoveryPath
{
    /// <summary>The image was not marked, or was opened without repair.</summary>
    None,
    /// <summary>Through the recovery record: only the tables in play were checked.</summary>
    Record,
    /// <summary>By the full check of every table.</summary>
    FullCheck,
}

/// <summary>
/// The automatic recovery of a read-write open with NEED_CHECK set: through the recovery record
/// (<see cref="RecoveryRecordFormat"/>) when it can be trusted, else by the full check and repair
/// (<see cref="QedChecker"/>).
/// </summary>
/// <remarks>
/// Why checking the recorded tables is enough: clusters come only from the end of the file and are never handed out
/// twice, so what a crash can leave wrong is an entry written ahead of data that never reached the disk, and only an
/// allocation that sets NEED_CHECK writes such entries; each of those records its table before touching it. Every
/// other table on disk held only entries that can be followed at every instant. The recorded tables and every L1
/// entry are judged by <see cref="EntryValidator"/>'s rules, the same as the full check's: an entry wholly past the end
/// of the file (what a crash leaves) is zeroed; anything else a crash cannot explain (an entry unaligned or in the
/// header, a table crossing the end or overlapping another, a damaged record) makes the record untrusted, and the
/// full check runs instead, as it would have without the record. While the recorded tables are repaired the record's
/// bit stays set (they are still the only tables in play); before a full check it is cleared, since a full repair may
/// change any table. Leaked clusters are left (they are not corruption); <c>qed check -r leaks</c> reclaims them.
/// </remarks>
internal static class OpenRecovery
{
    /// <summary>Recovers the image; returns the header as it now is (NEED_CHECK and auto-clear bits cleared) and how.</summary>
    public static async Task<(QedHeader Header, RecoveryPath Path)> RecoverAsync(IBlockStorage file, QedHeader header, bool useRecord,
        CancellationToken ct)
    {
        if (useRecord && (header.AutoclearFeatures & RecoveryRecordFormat.AutoclearBit) != 0)
        {
            var recovered = await TryThroughRecordAsync(file, header, ct).ConfigureAwait(false);
            if (recovered is { } done) return (done, RecoveryPath.Record);
        }
        if (header.AutoclearFeatures != 0)
        {
            header = header with { AutoclearFeatures = 0 };
            await HeaderWriter.WriteAsync(file, header, ct).ConfigureAwait(false);
            await file.FlushAsync(ct).ConfigureAwait(false);
        }
        return (await QedChecker.RepairOnOpenAsync(file, header, ct).ConfigureAwait(false), RecoveryPath.FullCheck);
    }

    /// <summary>Reads and decodes the record of an image whose header carries its bit (for <c>qed info</c>).</summary>
    public static async Task<RecoveryRecordFormat.Contents> ReadRecordAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var layout = RecoveryRecordFormat.For(header);
        if (layout is null) return new RecoveryRecordFormat.Contents(false, "the header area has no room for a record beside the backing file name", 0, 0, []);
        var area = new byte[layout.AreaBytes];
        await file.ReadAsync(layout.AreaOffset, area, ct).ConfigureAwait(false);
        return layout.Decode(area);
    }

    /// <summary>Repairs the recorded tables, or returns null (nothing written) when the record cannot be trusted.</summary>
    private static async Task<QedHeader?> TryThroughRecordAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var record = await ReadRecordAsync(file, header, ct).ConfigureAwait(false);
        if (!record.Valid) return null;

        var walker = new TableWalker(file, new QedGeometry(header));
        var g = walker.Geometry;
        var l1 = await walker.ReadL1Async(ct).ConfigureAwait(false);
        var inPlay = new HashSet<int>(record.Tables);

        // Every L1 entry: a table link past the end of the file is zeroed if its table is in play; the tables must not
        // overlap the L1 table or each other.
        var unlink = new List<int>();
        var spans = new List<(long First, int L1Index)>();
        foreach (var table in walker.Tables(l1))
        {
            if (table.Problem == OffsetProblem.PastEnd && inPlay.Contains(table.L1Index)) { unlink.Add(table.L1Index); continue; }
            if (table.Problem != OffsetProblem.None || g.OverlapsL1(table.Offset, g.TableBytes)) return null;
            spans.Add((g.ClusterOf((long)table.Offset), table.L1Index));
        }
        spans.Sort();
        for (int i = 1; i < spans.Count; i++)
            if (spans[i].First < spans[i - 1].First + g.TableClusters) return null;

        // The tables in play, judged in full before anything is written (so an untrusted record changes nothing):
        // entries past the end are to be zeroed; any other problem is not a crash's. Then the repairs, one table at a
        // time (memory stays one table however many are in play).
        var repair = new List<ulong>();
        foreach (int index in record.Tables)
        {
            ulong offset = l1[index];
            if (offset == 0 || unlink.Contains(index)) continue;
            var entries = await walker.ReadL2Async(offset, ct).ConfigureAwait(false);
            bool pastEnd = false;
            foreach (ulong entry in entries)
            {
                if (entry <= EntryValidator.ZeroClusterEntry) continue;
                var problem = EntryValidator.DataOffsetProblem(g, entry, walker.FileEnd);
                if (problem == OffsetProblem.PastEnd) pastEnd = true;
                else if (problem != OffsetProblem.None) return null;
            }
            if (pastEnd) repair.Add(offset);
        }
        foreach (ulong offset in repair)
        {
            var entries = await walker.ReadL2Async(offset, ct).ConfigureAwait(false);
            for (int j = 0; j < entries.Length; j++)
                if (entries[j] > EntryValidator.ZeroClusterEntry && EntryValidator.DataOffsetProblem(g, entries[j], walker.FileEnd) == OffsetProblem.PastEnd)
                    entries[j] = 0;
            await walker.WriteL2Async(offset, entries, ct).ConfigureAwait(false);
        }
        foreach (int index in unlink)
        {
            l1[index] = 0;
            await walker.WriteL1EntryAsync(l1, index, ct).ConfigureAwait(false);
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        header = header with { Features = header.Features & ~QedFeatures.NeedCheck, AutoclearFeatures = 0 };
        await HeaderWriter.WriteAsync(file, header, ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false);
        return header;
    }
}
