using System.Buffers.Binary;
using System.Text;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>An internal snapshot as listed in the snapshot table (listed only: reads use the active L1 table).</summary>
/// <param name="Id">The unique ID string.</param>
/// <param name="Name">The snapshot's name.</param>
/// <param name="L1TableOffset">File offset of the snapshot's L1 table.</param>
/// <param name="L1Size">Entries in that L1 table.</param>
/// <param name="Date">When the snapshot was taken.</param>
/// <param name="VmClockNanoseconds">Guest run time at the snapshot, in nanoseconds.</param>
/// <param name="VmStateSize">Bytes of saved VM state.</param>
/// <param name="DiskSize">The guest size at the snapshot, or null if not recorded (version 2).</param>
public sealed record Qcow2Snapshot(string Id, string Name, ulong L1TableOffset, uint L1Size, DateTimeOffset Date,
    ulong VmClockNanoseconds, ulong VmStateSize, ulong? DiskSize)
{
    /// <summary>Bytes of the fixed part of an entry.</summary>
    internal const int FixedSize = 40;

    /// <summary>Largest snapshot table read, in bytes (QEMU caps it at 64 MiB too).</summary>
    internal const long MaxTableBytes = 64L << 20;

    /// <summary>Parses <paramref name="count"/> entries from the snapshot table bytes read at <paramref name="tableOffset"/>.</summary>
    /// <exception cref="ImageFormatException">An entry runs past the table.</exception>
    internal static List<Qcow2Snapshot> ParseTable(ReadOnlySpan<byte> table, int count, long tableOffset)
    {
        var list = new List<Qcow2Snapshot>(Math.Min(count, 1024));
        int at = 0;
        for (int i = 0; i < count; i++)
        {
            if (table.Length - at < FixedSize) throw Truncated(i, tableOffset + at);
            var e = table[at..];
            ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(e);
            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(e[8..]);
            int idLength = BinaryPrimitives.ReadUInt16BigEndian(e[12..]);
            int nameLength = BinaryPrimitives.ReadUInt16BigEndian(e[14..]);
            uint seconds = BinaryPrimitives.ReadUInt32BigEndian(e[16..]);
            uint nanos = BinaryPrimitives.ReadUInt32BigEndian(e[20..]);
            ulong vmClock = BinaryPrimitives.ReadUInt64BigEndian(e[24..]);
            ulong vmState = BinaryPrimitives.ReadUInt32BigEndian(e[32..]);
            uint extraLength = BinaryPrimitives.ReadUInt32BigEndian(e[36..]);
            long entryLength = FixedSize + (long)extraLength + idLength + nameLength;
            if (entryLength > table.Length - at) throw Truncated(i, tableOffset + at);
            var extra = e.Slice(FixedSize, (int)extraLength);
            ulong? diskSize = null;
            if (extra.Length >= 8) vmState = BinaryPrimitives.ReadUInt64BigEndian(extra);
            if (extra.Length >= 16) diskSize = BinaryPrimitives.ReadUInt64BigEndian(extra[8..]);
            int idStart = FixedSize + (int)extraLength;
            string id = Encoding.UTF8.GetString(e.Slice(idStart, idLength));
            string name = Encoding.UTF8.GetString(e.Slice(idStart + idLength, nameLength));
            var date = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(Math.Min(nanos, 999_999_999u) / 100);
            list.Add(new Qcow2Snapshot(id, name, l1Offset, l1Size, date, vmClock, vmState, diskSize));
            at += (int)((entryLength + 7) & ~7L);
            if (at > table.Length) at = table.Length;
        }
        return list;
    }

    private static ImageFormatException Truncated(int index, long fileOffset) =>
        new($"qcow2 snapshot table entry {index} at file offset {fileOffset} runs past the end of the file", $"snapshot[{index}]", fileOffset);

    /// <summary>Reads the snapshot table the header names (empty without snapshots), never more than <see cref="MaxTableBytes"/>.</summary>
    internal static async Task<IReadOnlyList<Qcow2Snapshot>> ReadTableAsync(IBlockStorage file, Qcow2Header header, long fileLength, CancellationToken ct)
    {
        if (header.NbSnapshots == 0) return [];
        long available = Math.Min(fileLength - (long)header.SnapshotsOffset, Qcow2Snapshot.MaxTableBytes);
        // Entries have variable length: read a window and widen it only as far as the entries actually reach.
        long window = Math.Min(available, 64 * 1024);
        while (true)
        {
            var bytes = new byte[window];
            await file.ReadAsync((long)header.SnapshotsOffset, bytes, ct).ConfigureAwait(false);
            try
            {
                return Qcow2Snapshot.ParseTable(bytes, (int)header.NbSnapshots, (long)header.SnapshotsOffset);
            }
            catch (ImageFormatException) when (window < available)
            {
                window = Math.Min(available, window * 4);
            }
        }
    }
}
