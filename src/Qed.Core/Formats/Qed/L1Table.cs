using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// The L1 table: in memory (read lock-free by lookups) and on disk, where an entry is written in its 512-byte sector.
/// </summary>
/// <remarks>
/// Invariants: an entry changes only through <see cref="WriteAsync"/>, which sets it in memory and writes its sector
/// under one lock, so two writers never write the same sector with each other's change missing; an entry is set only
/// to 0 or to a table whose bytes are already durable (the caller's duty: see <see cref="MetadataWriteBack"/>).
/// </remarks>
internal sealed class L1Table(IBlockStorage file, QedGeometry geometry, ulong[] entries)
{
    private readonly ulong[] _entries = entries;
    private readonly SemaphoreSlim _writeLock = new(1, 1);

    /// <summary>Entries in the table.</summary>
    public int Length => _entries.Length;

    /// <summary>Entry <paramref name="index"/>: the file offset of that L2 table, or 0.</summary>
    public ulong this[int index] => Volatile.Read(ref _entries[index]);

    /// <summary>Sets an entry and writes the 512-byte sector of the table that holds it.</summary>
    public async Task WriteAsync(int index, ulong value)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            Volatile.Write(ref _entries[index], value);
            var (start, count) = TableCodec.SectorRange(index, index, _entries.Length);
            await file.WriteAsync(geometry.L1EntryFileOffset(start), TableCodec.Encode(_entries, start, count)).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }
}
