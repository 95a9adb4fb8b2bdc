using System.Buffers.Binary;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// The on-disk form of a table (L1 or L2): little-endian u64 entries, written back in whole 512-byte sectors so a
/// sector write is the unit a crash either lands or does not.
/// </summary>
/// <remarks>
/// Invariants: encoding reads every entry with a volatile read (entries change concurrently under their table's
/// lock; a snapshot is taken under it); a sector range always covers whole sectors of 64 entries, clipped at the
/// table's end, and contains the entries asked for.
/// </remarks>
internal static class TableCodec
{
    /// <summary>Entries per 512-byte sector.</summary>
    public const int EntriesPerSector = 512 / 8;

    /// <summary>Decodes little-endian u64 entries.</summary>
    public static ulong[] Decode(ReadOnlySpan<byte> raw)
    {
        var entries = new ulong[raw.Length / 8];
        Decode(raw, entries);
        return entries;
    }

    /// <summary>Decodes little-endian u64 entries into <paramref name="entries"/>, which holds at least raw.Length / 8.</summary>
    public static void Decode(ReadOnlySpan<byte> raw, Span<ulong> entries)
    {
        for (int i = 0; i < raw.Length / 8; i++)
            entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 8)..]);
    }

    /// <summary>Reads and decodes a table of <paramref name="bytes"/> bytes at <paramref name="offset"/>.</summary>
    public static async Task<ulong[]> ReadAsync(IBlockStorage file, long offset, int bytes, CancellationToken ct)
    {
        var raw = new byte[bytes];
        await file.ReadAsync(offset, raw, ct).ConfigureAwait(false);
        return Decode(raw);
    }

    /// <summary>Serialises entries [first, first+count) into little-endian bytes.</summary>
    public static byte[] Encode(ulong[] entries, int first, int count)
    {
        var bytes = new byte[count * 8];
        for (int i = 0; i < count; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), Volatile.Read(ref entries[first + i]));
        return bytes;
    }

    /// <summary>
    /// The whole 512-byte sectors holding entries [low, high] of a table of <paramref name="entryCount"/> entries: the
    /// first entry index and the number of entries to write.
    /// </summary>
    public static (int Start, int Count) SectorRange(int low, int high, int entryCount)
    {
        int start = low / EntriesPerSector * EntriesPerSector;
        int end = Math.Min(entryCount, (high / EntriesPerSector + 1) * EntriesPerSector);
        return (start, end - start);
    }
}
