using System.Buffers.Binary;
using System.Text;
using Qed.Check;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Operations;

/// <summary>
/// Metadata edits on a closed QED file: the backing fields, the size, dropping mappings past an end, moving data
/// clusters down into holes, emptying. Each edit orders its writes so that a crash at any point leaves an image that
/// reads either as before or as after (at worst with leaked clusters): data before the entry that points at it, entries
/// before the truncation that frees their old clusters, the header last.
/// </summary>
internal sealed class QedFileEditor : IAsyncDisposable
{
    private readonly IBlockStorage _file;
    private QedHeader _header;

    private QedFileEditor(IBlockStorage file, QedHeader header)
    {
        _file = file;
        _header = header;
    }

    public QedHeader Header => _header;
    private long ClusterSize => _header.ClusterSize;
    private int TableBytes => (int)(_header.ClusterSize * _header.TableSize);
    private long HeaderBytes => (long)_header.HeaderSize * _header.ClusterSize;

    /// <summary>Opens a QED file for editing: validates the header and repairs an image left with NEED_CHECK set.</summary>
    public static async Task<QedFileEditor> OpenAsync(string path, CancellationToken ct)
    {
        FileStorage file;
        try
        {
            file = FileStorage.Open(path, writable: true);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory", path, e);
        }
        try
        {
            return await OpenAsync(file, ct).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Opens storage holding a QED image for editing (the editor owns it afterwards).</summary>
    public static async Task<QedFileEditor> OpenAsync(IBlockStorage file, CancellationToken ct)
    {
        var bytes = new byte[QedHeader.Size];
        await file.ReadAsync(0, bytes, ct).ConfigureAwait(false);
        var header = QedHeader.Parse(bytes);
        header.Validate(file.Length);
        if (header.AutoclearFeatures != 0)
        {
            // As any read-write open: auto-clear bits belong to features this program does not maintain.
            header = header with { AutoclearFeatures = 0 };
            await QedImage.WriteHeaderAsync(file, header, ct).ConfigureAwait(false);
            await file.FlushAsync(ct).ConfigureAwait(false);
        }
        if (header.NeedsCheck) header = await QedChecker.RepairOnOpenAsync(file, header, ct).ConfigureAwait(false);
        return new QedFileEditor(file, header);
    }

    /// <summary>
    /// Rewrites the backing fields (rebase -u): the name at offset 64, the bytes of an older, longer name zeroed,
    /// BACKING_FORMAT_NO_PROBE for raw. Header and name go in one write, then a flush.
    /// </summary>
    /// <exception cref="NotSupportedException">The image has compat feature bits this program does not know.</exception>
    /// <exception cref="ArgumentException">The name does not fit in the header area, or the format is unknown.</exception>
    public async Task SetBackingAsync(string? name, string? format, CancellationToken ct)
    {
        if (_header.CompatFeatures != 0)
            throw new NotSupportedException($"Could not change the backing file of '{_file.Name}': it has unknown compat features 0x{_header.CompatFeatures:x}, which a header rewrite could invalidate");
        if (format != null && !QedImage.KnownFormats.Contains(format))
            throw new ArgumentException($"Unknown backing file format '{format}' (known: qed, raw, qcow2)");
        byte[] nameBytes = Encoding.UTF8.GetBytes(name ?? "");
        long room = HeaderBytes - QedHeader.Size;
        if (nameBytes.Length > room || nameBytes.Length > QedHeader.MaxBackingNameLength)
            throw new ArgumentException($"Could not change the backing file to '{(name!.Length > 60 ? name[..60] + "..." : name)}': the name is {nameBytes.Length} bytes and the header area of '{_file.Name}' has room for {Math.Min(room, QedHeader.MaxBackingNameLength)}");

        var features = _header.Features & ~(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe);
        if (nameBytes.Length > 0)
        {
            features |= QedFeatures.BackingFile;
            if (format == "raw") features |= QedFeatures.BackingFormatNoProbe;
        }
        var header = _header with
        {
            Features = features,
            BackingFilenameOffset = nameBytes.Length > 0 ? QedHeader.Size : 0u,
            BackingFilenameSize = (uint)nameBytes.Length,
        };

        // Cover every byte the old name occupied, so none of it is left behind the new one.
        long oldEnd = QedHeader.Size;
        if (_header.BackingFilenameSize > 0 && (_header.Features & QedFeatures.BackingFile) != 0)
            oldEnd = Math.Max(oldEnd, Math.Min(HeaderBytes, (long)_header.BackingFilenameOffset + _header.BackingFilenameSize));
        var buffer = new byte[Math.Max(oldEnd, QedHeader.Size + nameBytes.Length)];
        header.WriteTo(buffer);
        nameBytes.CopyTo(buffer, QedHeader.Size);
        await _file.WriteAsync(0, buffer, ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        _header = header;
    }

    /// <summary>Writes a new image size into the header and flushes.</summary>
    public async Task SetSizeAsync(long size, CancellationToken ct)
    {
        var header = _header with { ImageSize = (ulong)size };
        await QedImage.WriteHeaderAsync(_file, header, ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        _header = header;
    }

    /// <summary>
    /// Sets every L2 entry for guest clusters at or past <paramref name="firstCluster"/> to 0, and unlinks L2 tables
    /// that map nothing below it. Changed tables are written, then the L1 table, then a flush: the freed clusters are
    /// leaks until <see cref="ReclaimAsync"/> runs.
    /// </summary>
    public async Task DropMappingsFromAsync(long firstCluster, CancellationToken ct)
    {
        var l1 = await ReadL1Async(ct).ConfigureAwait(false);
        int entries = TableBytes / 8;
        bool l1Changed = false;
        for (int i = 0; i < l1.Length; i++)
        {
            if (l1[i] == 0) continue;
            long tableFirst = (long)i * entries;
            if (tableFirst >= firstCluster)
            {
                l1[i] = 0;
                l1Changed = true;
                continue;
            }
            if (tableFirst + entries <= firstCluster) continue;
            var table = await QedImage.ReadTableAsync(_file, (long)l1[i], TableBytes, ct).ConfigureAwait(false);
            int from = (int)(firstCluster - tableFirst);
            if (Array.FindIndex(table, from, e => e != 0) < 0) continue;
            Array.Clear(table, from, entries - from);
            await _file.WriteAsync((long)l1[i], Encode(table), ct).ConfigureAwait(false);
        }
        if (l1Changed) await _file.WriteAsync((long)_header.L1TableOffset, Encode(l1), ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Gives back the space of unreferenced clusters: L2 tables, then data clusters, from the end of the file are copied
    /// down into holes (each batch of copies flushed before the entries that point at them, the entries flushed before
    /// anything is truncated), until nothing more moves; then the file is cut after its last referenced cluster.
    /// Returns the new file length.
    /// </summary>
    public async Task<long> ReclaimAsync(IProgress<(long Done, long Total)>? progress, CancellationToken ct)
    {
        long moved;
        do
        {
            moved = await MoveTablesDownAsync(await ScanAsync(ct).ConfigureAwait(false), ct).ConfigureAwait(false);
            moved += await MoveDataDownAsync(await ScanAsync(ct).ConfigureAwait(false), progress, ct).ConfigureAwait(false);
        }
        while (moved > 0);

        var scan = await ScanAsync(ct).ConfigureAwait(false);
        long cs = ClusterSize;
        long last = _file.Length / cs - 1;
        while (last >= 0 && !scan.Used.Get(last)) last--;
        long newLength = (last + 1) * cs;
        if (newLength < _file.Length)
        {
            await _file.SetLengthAsync(newLength, ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
        }
        return newLength;
    }

    /// <summary>Which clusters are referenced, and by what.</summary>
    private sealed record Scan(ulong[] L1, SparseBitmap Used, SortedDictionary<long, (long TableOffset, int Index)> DataOwners);

    private async Task<Scan> ScanAsync(CancellationToken ct)
    {
        var l1 = await ReadL1Async(ct).ConfigureAwait(false);
        long cs = ClusterSize;
        var used = new SparseBitmap();
        for (long c = 0; c < _header.HeaderSize; c++) used.Set(c);
        for (long c = 0; c < _header.TableSize; c++) used.Set((long)_header.L1TableOffset / cs + c);
        var owners = new SortedDictionary<long, (long TableOffset, int Index)>();
        foreach (ulong tableOffset in l1)
        {
            if (tableOffset == 0) continue;
            for (long c = 0; c < _header.TableSize; c++) used.Set((long)tableOffset / cs + c);
            var table = await QedImage.ReadTableAsync(_file, (long)tableOffset, TableBytes, ct).ConfigureAwait(false);
            for (int j = 0; j < table.Length; j++)
            {
                if (table[j] <= 1) continue;
                long cluster = (long)table[j] / cs;
                used.Set(cluster);
                owners[cluster] = ((long)tableOffset, j);
            }
        }
        return new Scan(l1, used, owners);
    }

    /// <summary>Moves L2 tables, highest first, into the lowest free runs below them. Returns how many moved.</summary>
    private async Task<long> MoveTablesDownAsync(Scan scan, CancellationToken ct)
    {
        long cs = ClusterSize, span = _header.TableSize;
        var freed = new HashSet<long>();
        bool Free(long c) => !scan.Used.Get(c) || freed.Contains(c);
        var tables = Enumerable.Range(0, scan.L1.Length).Where(i => scan.L1[i] != 0).OrderByDescending(i => scan.L1[i]).ToList();
        long moved = 0;
        var buffer = new byte[TableBytes];
        var entry = new byte[8];
        foreach (int i in tables)
        {
            ct.ThrowIfCancellationRequested();
            long from = (long)scan.L1[i] / cs;
            long to = -1;
            for (long c = _header.HeaderSize; c + span <= from; c++)
            {
                long k = 0;
                while (k < span && Free(c + k)) k++;
                if (k == span) { to = c; break; }
                c += k; // skip past the used cluster
            }
            if (to < 0) continue;
            await _file.ReadAsync(from * cs, buffer, ct).ConfigureAwait(false);
            await _file.WriteAsync(to * cs, buffer, ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false); // the copy is durable before L1 points at it
            BinaryPrimitives.WriteUInt64LittleEndian(entry, (ulong)(to * cs));
            await _file.WriteAsync((long)_header.L1TableOffset + 8L * i, entry, ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false); // L1 durable before the old copy can be overwritten
            for (long k = 0; k < span; k++)
            {
                scan.Used.Set(to + k);
                freed.Remove(to + k);
                freed.Add(from + k);
            }
            moved++;
        }
        return moved;
    }

    /// <summary>Moves data clusters, highest first, into the lowest holes below them. Returns how many moved.</summary>
    private async Task<long> MoveDataDownAsync(Scan scan, IProgress<(long Done, long Total)>? progress, CancellationToken ct)
    {
        long cs = ClusterSize;
        var moves = new List<(long From, long To, long TableOffset, int Index)>();
        long hole = _header.HeaderSize;
        foreach (long from in scan.DataOwners.Keys.Reverse())
        {
            while (hole < from && scan.Used.Get(hole)) hole++;
            if (hole >= from) break;
            var (tableOffset, index) = scan.DataOwners[from];
            moves.Add((from, hole, tableOffset, index));
            scan.Used.Set(hole);
            hole++;
        }

        const int Batch = 64;
        var buffer = new byte[cs];
        var entry = new byte[8];
        for (int start = 0; start < moves.Count; start += Batch)
        {
            var batch = moves.GetRange(start, Math.Min(Batch, moves.Count - start));
            foreach (var m in batch)
            {
                ct.ThrowIfCancellationRequested();
                await _file.ReadAsync(m.From * cs, buffer, ct).ConfigureAwait(false);
                await _file.WriteAsync(m.To * cs, buffer, ct).ConfigureAwait(false);
            }
            await _file.FlushAsync(ct).ConfigureAwait(false); // copies durable before any entry points at them
            foreach (var m in batch)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(entry, (ulong)(m.To * cs));
                await _file.WriteAsync(m.TableOffset + 8L * m.Index, entry, ct).ConfigureAwait(false);
            }
            await _file.FlushAsync(ct).ConfigureAwait(false); // entries durable before the old clusters can go
            progress?.Report((Math.Min(start + Batch, moves.Count), moves.Count));
        }
        return moves.Count;
    }

    /// <summary>
    /// Unmaps everything (after commit): the L1 table is zeroed and flushed, then the file is cut after the header and
    /// the L1 table. A crash in between reads through to the backing file either way, since it holds the same data.
    /// </summary>
    public async Task EmptyAsync(CancellationToken ct)
    {
        await _file.WriteAsync((long)_header.L1TableOffset, new byte[TableBytes], ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        await ReclaimAsync(null, ct).ConfigureAwait(false);
    }

    private Task<ulong[]> ReadL1Async(CancellationToken ct) =>
        QedImage.ReadTableAsync(_file, (long)_header.L1TableOffset, TableBytes, ct);

    private static byte[] Encode(ulong[] entries)
    {
        var bytes = new byte[entries.Length * 8];
        for (int i = 0; i < entries.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), entries[i]);
        return bytes;
    }

    public ValueTask DisposeAsync() => _file.DisposeAsync();
}
