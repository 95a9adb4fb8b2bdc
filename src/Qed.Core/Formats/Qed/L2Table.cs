using Qed.Formats.Shared;

namespace Qed.Formats.Qed;

/// <summary>
/// An L2 table in memory: the authority for reads of the guest range it maps.
/// </summary>
/// <remarks>
/// Invariants: entries are read without a lock (volatile) and changed only under this table's own monitor, together
/// with the dirty range, so a snapshot taken under it is one consistent state; the dirty range [DirtyLow, DirtyHigh]
/// covers every entry changed in memory since the last snapshot (DirtyHigh &lt; 0 when clean); <see cref="DiskLock"/>
/// is held from a snapshot until its bytes are written, so an older copy of the table never lands after a newer one;
/// <see cref="Linked"/> turns true once, after the whole table is on disk and the L1 entry naming it is written.
/// <see cref="FileOffset"/> changes only while the request gate is paused (defragment moves tables).
/// The <see cref="CachedTable"/> state (pins, use order) belongs to <see cref="L2TableCache"/>'s residency.
/// </remarks>
internal sealed class L2Table(int l1Index, ulong fileOffset, ulong[] entries, bool linked) : CachedTable
{
    private readonly ulong[] _entries = entries;
    private ulong _fileOffset = fileOffset;
    private int _dirtyLow = int.MaxValue, _dirtyHigh = -1;
    private volatile bool _linked = linked;

    /// <summary>The L1 index naming this table.</summary>
    public readonly int L1Index = l1Index;

    /// <summary>Orders this table's disk writes: held from a snapshot until its bytes are written.</summary>
    public readonly SemaphoreSlim DiskLock = new(1, 1);

    /// <summary>Where the table lies in the file.</summary>
    public ulong FileOffset => Volatile.Read(ref _fileOffset);

    /// <summary>Entries in the table.</summary>
    public int Count => _entries.Length;

    /// <summary>True once the table is on disk and the L1 entry pointing at it is written.</summary>
    public bool Linked => _linked;

    /// <summary>Whether entries changed in memory and are not yet snapshotted for writing.</summary>
    public bool IsDirty => Volatile.Read(ref _dirtyHigh) >= 0;

    /// <summary>Entry <paramref name="index"/>, as it is now.</summary>
    public ulong Entry(int index) => Volatile.Read(ref _entries[index]);

    /// <summary>
    /// Sets entries [first, first+count) to firstValue, firstValue+step, ...; with <paramref name="markDirty"/> they join
    /// the dirty range for the next write-back.
    /// </summary>
    public void SetEntries(int first, int count, ulong firstValue, ulong step, bool markDirty)
    {
        lock (this)
        {
            for (int i = 0; i < count; i++)
                Volatile.Write(ref _entries[first + i], firstValue + step * (ulong)i);
            if (!markDirty) return;
            _dirtyLow = Math.Min(_dirtyLow, first);
            _dirtyHigh = Math.Max(_dirtyHigh, first + count - 1);
        }
    }

    /// <summary>
    /// Sets entries [first, first+count) as <see cref="SetEntries"/> does (not marked dirty) and snapshots what to write
    /// for them in one step, so the snapshot holds them.
    /// </summary>
    public (byte[] Bytes, long At, bool Link) SetAndSnapshot(int first, int count, ulong firstValue, ulong step)
    {
        lock (this)
        {
            for (int i = 0; i < count; i++)
                Volatile.Write(ref _entries[first + i], firstValue + step * (ulong)i);
            return SnapshotLocked(first, first + count - 1);
        }
    }

    /// <summary>
    /// What to write for the dirty range: null when the table is clean and linked, else as <see cref="SnapshotLocked"/>.
    /// Clears the dirty range.
    /// </summary>
    public (byte[] Bytes, long At, bool Link)? SnapshotDirty()
    {
        lock (this)
        {
            if (_dirtyHigh < 0 && _linked) return null;
            return SnapshotLocked(_dirtyLow == int.MaxValue ? 0 : _dirtyLow, Math.Max(0, _dirtyHigh));
        }
    }

    /// <summary>
    /// What to write: the whole table if it was never linked, else the 512-byte sectors holding entries [low, high] and
    /// the dirty range. Clears the dirty range. Caller holds the monitor.
    /// </summary>
    private (byte[] Bytes, long At, bool Link) SnapshotLocked(int low, int high)
    {
        if (_dirtyHigh >= 0)
        {
            low = Math.Min(low, _dirtyLow);
            high = Math.Max(high, _dirtyHigh);
        }
        _dirtyLow = int.MaxValue;
        _dirtyHigh = -1;
        if (!_linked)
            return (TableCodec.Encode(_entries, 0, _entries.Length), (long)_fileOffset, true);
        var (start, count) = TableCodec.SectorRange(low, high, _entries.Length);
        return (TableCodec.Encode(_entries, start, count), (long)_fileOffset + 8L * start, false);
    }

    /// <summary>The whole table's bytes, as they are now.</summary>
    public byte[] EncodeAll()
    {
        lock (this) return TableCodec.Encode(_entries, 0, _entries.Length);
    }

    /// <summary>Marks the table linked: it is on disk and its L1 entry is written.</summary>
    public void MarkLinked()
    {
        lock (this) _linked = true;
    }

    /// <summary>Records the table's new home (defragment, with the gate paused, after the L1 entry names it).</summary>
    public void MoveTo(ulong fileOffset)
    {
        lock (this) Volatile.Write(ref _fileOffset, fileOffset);
    }
}
