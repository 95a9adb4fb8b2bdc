using System.Security.Cryptography;

namespace Qed.Formats.Qed;

/// <summary>
/// Keeps the recovery record (<see cref="RecoveryRecordFormat"/>) ahead of the tables: before an allocation that may leave
/// an entry ahead of its data modifies an L2 table, that table's L1 index is durable in the record.
/// </summary>
/// <remarks>
/// State owned here, under this type's own lock: whether an epoch is recording, its number, the bits durable on disk
/// and the bits asked for, and the batch being written. Invariants: a bit is in <c>_durable</c> only after the sector
/// holding it was written and synced in this epoch; an epoch starts only while NEED_CHECK is clear with no
/// allocation in flight (<see cref="NeedCheckTracker"/> calls <see cref="StartEpochAsync"/> before it sets the bit,
/// and <see cref="Reset"/> after it clears it); callers asking for bits while a batch is written share the next
/// batch, so a table costs one synced sector write (of that sector alone: <see cref="Storage.IBlockStorage.WriteDurableAsync"/>)
/// the first time it is touched in an epoch and nothing after.
/// The sectors themselves are written by <see cref="HeaderWriter"/>, which owns the header area and may drop the
/// record (a backing name moved over its area): then recording stops for the session and NEED_CHECK alone remains.
/// </remarks>
/// <param name="header">The header area's writer.</param>
/// <param name="enabled">False when the image must recover by the full check (tests of that path).</param>
/// <param name="faultOmitLaterTables">Fault injection: record only the epoch's first table, so the crash test can show
/// that it catches a record that misses one.</param>
internal sealed class RecoveryRecordWriter(HeaderWriter header, bool enabled, bool faultOmitLaterTables = false)
{
    private readonly Lock _lock = new();
    private bool _active;
    private ulong _epoch;
    private ulong[] _durable = [];
    private ulong[] _wanted = [];
    private Task? _batch;

    /// <summary>Whether an epoch is recording (for <c>qed info</c> and tests).</summary>
    public bool IsRecording
    {
        get { lock (_lock) return _active; }
    }

    /// <summary>L1 indices durable in the record this epoch (for tests).</summary>
    public int TablesRecorded
    {
        get
        {
            lock (_lock) return _durable.Sum(w => System.Numerics.BitOperations.PopCount(w));
        }
    }

    /// <summary>
    /// Starts an epoch: writes the head (with <paramref name="cleanFileEnd"/>) and the sector holding
    /// <paramref name="firstIndex"/>, and syncs. Returns false when the image keeps no record (the caller then sets
    /// NEED_CHECK without the record's bit, and recovery does the full check).
    /// </summary>
    public async Task<bool> StartEpochAsync(long cleanFileEnd, int firstIndex)
    {
        var record = header.Record;
        if (!enabled || record is null) return false;
        ulong epoch = RandomNonZero();
        var bits = new ulong[(record.L1Entries + 63) / 64];
        Set(bits, firstIndex);
        var sectors = new List<(long, byte[])>
        {
            (record.AreaOffset, record.EncodeHead(epoch, cleanFileEnd)),
            (record.SectorOffsetOf(firstIndex), record.EncodeBitmapSector(epoch, 1 + firstIndex / RecoveryRecordFormat.BitsPerSector, bits)),
        };
        if (!await header.WriteRecordAsync(sectors, flushAll: true).ConfigureAwait(false)) return false;
        lock (_lock)
        {
            _epoch = epoch;
            _durable = bits;
            _wanted = (ulong[])bits.Clone();
            _active = true;
        }
        return true;
    }

    /// <summary>Returns once <paramref name="l1Index"/> is durable in the record, or at once when none is recording.</summary>
    public ValueTask EnsureAsync(int l1Index)
    {
        lock (_lock)
        {
            if (!_active || faultOmitLaterTables || IsSet(_durable, l1Index)) return ValueTask.CompletedTask;
        }
        return new ValueTask(EnsureSlowAsync(l1Index));
    }

    private async Task EnsureSlowAsync(int l1Index)
    {
        while (true)
        {
            Task batch;
            lock (_lock)
            {
                if (!_active || IsSet(_durable, l1Index)) return;
                Set(_wanted, l1Index);
                batch = _batch ??= Task.Run(WriteBatchAsync);
            }
            await batch.ConfigureAwait(false);
        }
    }

    /// <summary>Writes every sector whose wanted bits are not all durable, syncs, and marks them durable.</summary>
    private async Task WriteBatchAsync()
    {
        try
        {
            ulong[] snapshot, durable;
            ulong epoch;
            var record = header.Record;
            lock (_lock)
            {
                snapshot = (ulong[])_wanted.Clone();
                durable = _durable;
                epoch = _epoch;
            }
            bool written = false;
            if (record != null)
            {
                var sectors = new List<(long, byte[])>();
                for (int s = 1; s <= record.BitmapSectors; s++)
                {
                    int first = (s - 1) * RecoveryRecordFormat.BitsPerSector, end = Math.Min(record.L1Entries, first + RecoveryRecordFormat.BitsPerSector);
                    bool changed = false;
                    for (int w = first >> 6; w <= (end - 1) >> 6 && !changed; w++) changed = snapshot[w] != durable[w];
                    if (changed) sectors.Add((record.AreaOffset + (long)s * RecoveryRecordFormat.SectorSize, record.EncodeBitmapSector(epoch, s, snapshot)));
                }
                written = await header.WriteRecordAsync(sectors, flushAll: false).ConfigureAwait(false);
            }
            lock (_lock)
            {
                if (written && _active && _epoch == epoch) _durable = snapshot;
                else _active = false; // the header area dropped the record: NEED_CHECK alone covers the session
            }
        }
        finally
        {
            lock (_lock) _batch = null;
        }
    }

    /// <summary>Ends the epoch once NEED_CHECK (and with it the record's bit) is cleared on disk.</summary>
    public void Reset()
    {
        lock (_lock)
        {
            _active = false;
            _durable = [];
            _wanted = [];
        }
    }

    private static ulong RandomNonZero()
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong value;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            value = BitConverter.ToUInt64(bytes);
        } while (value == 0);
        return value;
    }

    private static bool IsSet(ulong[] bits, int index) => index >> 6 < bits.Length && (bits[index >> 6] & (1UL << (index & 63))) != 0;

    private static void Set(ulong[] bits, int index) => bits[index >> 6] |= 1UL << (index & 63);
}
