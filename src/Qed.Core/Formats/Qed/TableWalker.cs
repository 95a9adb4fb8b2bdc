using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// Walks a QED image's tables as they lie on the storage, before anything trusts them (the consistency check, and any
/// offline pass over every table): reads the L1 table, lists the L1 entries that name a table in L1 order with the
/// verdict of <see cref="EntryValidator.TableOffsetProblem"/> on each, and reads and writes L2 tables and L1 entries
/// through <see cref="TableCodec"/>.
/// </summary>
/// <remarks>
/// Invariants: <see cref="FileEnd"/> is the end of the file's last whole cluster when the walker is made, and every
/// verdict is against it (a trailing partial cluster does not count, and clusters a repair appends during the walk are
/// not part of the image it walks); one L2 buffer is reused, so a walk holds one table in memory however many the
/// image has. The walker takes no lock: its caller owns the file for the walk (the check runs before the image opens).
/// </remarks>
internal sealed class TableWalker
{
    private readonly IBlockStorage _file;
    private byte[]? _raw;
    private ulong[]? _entries;

    /// <summary>A walker over the tables of <paramref name="file"/>, whose header gave <paramref name="geometry"/>.</summary>
    public TableWalker(IBlockStorage file, QedGeometry geometry)
    {
        _file = file;
        Geometry = geometry;
        FileEnd = geometry.RoundDown(file.Length);
    }

    /// <summary>One L1 entry that names a table: its index, the offset it holds, and that offset's verdict.</summary>
    public readonly record struct TableRef(int L1Index, ulong Offset, EntryValidator.OffsetProblem Problem);

    /// <summary>The image's table geometry.</summary>
    public QedGeometry Geometry { get; }

    /// <summary>The end of the file's last whole cluster when the walker was made: what every verdict is against.</summary>
    public long FileEnd { get; }

    /// <summary>Whole clusters in the file when the walker was made.</summary>
    public long FileClusters => Geometry.ClusterOf(FileEnd);

    /// <summary>Reads the L1 table (a new array each time: the caller may change and write it back).</summary>
    public Task<ulong[]> ReadL1Async(CancellationToken ct) =>
        TableCodec.ReadAsync(_file, Geometry.L1Offset, Geometry.TableBytes, ct);

    /// <summary>
    /// The entries of <paramref name="l1"/> that name a table (every entry but 0), in L1 order. Each entry is read when
    /// it is reached, so the caller may change entries it was already given.
    /// </summary>
    public IEnumerable<TableRef> Tables(ulong[] l1)
    {
        for (int i = 0; i < l1.Length; i++)
        {
            ulong offset = l1[i];
            if (offset != 0) yield return new TableRef(i, offset, EntryValidator.TableOffsetProblem(Geometry, offset, FileEnd));
        }
    }

    /// <summary>
    /// Reads the L2 table at <paramref name="offset"/> (a valid table offset) into the walker's one buffer: the entries
    /// returned are valid until the next read, and the caller may change them and write them back.
    /// </summary>
    /// <exception cref="IOException">The storage could not read the table.</exception>
    public async Task<ulong[]> ReadL2Async(ulong offset, CancellationToken ct)
    {
        _raw ??= new byte[Geometry.TableBytes];
        _entries ??= new ulong[Geometry.EntriesPerTable];
        await _file.ReadAsync((long)offset, _raw, ct).ConfigureAwait(false);
        TableCodec.Decode(_raw, _entries);
        return _entries;
    }

    /// <summary>Writes a whole L2 table's <paramref name="entries"/> at <paramref name="offset"/>.</summary>
    public ValueTask WriteL2Async(ulong offset, ulong[] entries, CancellationToken ct) =>
        _file.WriteAsync((long)offset, TableCodec.Encode(entries, 0, entries.Length), ct);

    /// <summary>Writes the whole L1 table.</summary>
    public ValueTask WriteL1Async(ulong[] l1, CancellationToken ct) =>
        _file.WriteAsync(Geometry.L1Offset, TableCodec.Encode(l1, 0, l1.Length), ct);

    /// <summary>Writes L1 entry <paramref name="index"/> (its 8 bytes alone) as <paramref name="l1"/> holds it.</summary>
    public ValueTask WriteL1EntryAsync(ulong[] l1, int index, CancellationToken ct) =>
        _file.WriteAsync(Geometry.L1EntryFileOffset(index), TableCodec.Encode(l1, index, 1), ct);
}
