using System.Buffers.Binary;
using System.Numerics;

namespace Qed.Formats.Qed;

/// <summary>
/// The recovery record, an extension of the QED format (docs/recovery-record.md is its specification): which L2
/// tables may have been modified since the image was last known clean, so that recovery after a crash checks those
/// tables instead of every table. It lives in the last sectors of the header area and is valid only while the
/// <see cref="AutoclearBit"/> auto-clear feature bit is set, which any writer that does not maintain it clears.
/// </summary>
/// <remarks>
/// Layout: <see cref="Sectors"/> sectors of 512 bytes ending at the end of the header area. Sector 0 is the head
/// (epoch, clean file end, L1 entry count); sector n ≥ 1 holds bits [(n-1)·3904, n·3904) of a bitmap over L1 indices.
/// Every sector starts with the same 24 bytes: magic "QEDR", CRC-32C of the sector with this field zero, the epoch
/// (a random number drawn when recording starts) and the sector's index. A bitmap sector counts for the record only when
/// its epoch is the head's: sectors left from an earlier epoch, or never written (all zeroes), hold no bits. Each write
/// is of whole sectors, so a sector is old or new after a crash; one that is neither (a bad CRC) makes the record
/// untrusted.
/// </remarks>
internal sealed class RecoveryRecordFormat
{
    /// <summary>The auto-clear feature bit that says the record is valid.</summary>
    public const ulong AutoclearBit = 1;

    /// <summary>Bytes per record sector: the unit a crash leaves old or new.</summary>
    public const int SectorSize = 512;

    /// <summary>"QEDR" read as a little-endian u32.</summary>
    public const uint Magic = 0x52444551;

    private const int PreambleSize = 24;
    private const int MagicAt = 0, CrcAt = 4, EpochAt = 8, IndexAt = 16;
    private const int CleanEndAt = 24, L1EntriesAt = 32, BitmapSectorsAt = 36;

    /// <summary>L1 indices one bitmap sector holds.</summary>
    public const int BitsPerSector = (SectorSize - PreambleSize) * 8;

    private RecoveryRecordFormat(long areaOffset, int l1Entries)
    {
        AreaOffset = areaOffset;
        L1Entries = l1Entries;
        BitmapSectors = SectorsFor(l1Entries) - 1;
    }

    /// <summary>Sectors of the record, head included, for an L1 table of <paramref name="l1Entries"/> entries.</summary>
    private static int SectorsFor(int l1Entries) => 1 + (l1Entries + BitsPerSector - 1) / BitsPerSector;

    /// <summary>File offset of the record's first sector.</summary>
    public long AreaOffset { get; }

    /// <summary>L1 entries the bitmap covers.</summary>
    public int L1Entries { get; }

    /// <summary>Bitmap sectors after the head.</summary>
    public int BitmapSectors { get; }

    /// <summary>Sectors in the record, head included.</summary>
    public int Sectors => 1 + BitmapSectors;

    /// <summary>Bytes in the record area.</summary>
    public int AreaBytes => Sectors * SectorSize;

    /// <summary>File offset of the sector holding L1 index <paramref name="l1Index"/>'s bit.</summary>
    public long SectorOffsetOf(int l1Index) => AreaOffset + (long)(1 + l1Index / BitsPerSector) * SectorSize;

    /// <summary>
    /// Where the record lies for <paramref name="header"/>: the last sectors of the header area, or null when they
    /// would overlap the 64-byte header or the backing file name (the image then recovers by the full check).
    /// </summary>
    public static RecoveryRecordFormat? For(in QedHeader header)
    {
        int l1Entries = (int)(header.TableSize * header.ClusterSize / 8);
        long headerBytes = (long)header.HeaderSize * header.ClusterSize;
        long start = headerBytes - (long)SectorsFor(l1Entries) * SectorSize;
        long reserved = QedHeader.Size;
        if ((header.Features & QedFeatures.BackingFile) != 0)
            reserved = Math.Max(reserved, (long)header.BackingFilenameOffset + header.BackingFilenameSize);
        return start >= reserved ? new RecoveryRecordFormat(start, l1Entries) : null;
    }

    /// <summary>Whether a name at [<paramref name="offset"/>, +<paramref name="length"/>) would overlap the record area.</summary>
    public bool Overlaps(long offset, long length) => length > 0 && offset < AreaOffset + AreaBytes && AreaOffset < offset + length;

    /// <summary>The head sector of an epoch.</summary>
    public byte[] EncodeHead(ulong epoch, long cleanFileEnd)
    {
        var sector = new byte[SectorSize];
        BinaryPrimitives.WriteInt64LittleEndian(sector.AsSpan(CleanEndAt), cleanFileEnd);
        BinaryPrimitives.WriteInt32LittleEndian(sector.AsSpan(L1EntriesAt), L1Entries);
        BinaryPrimitives.WriteInt32LittleEndian(sector.AsSpan(BitmapSectorsAt), BitmapSectors);
        Seal(sector, epoch, 0);
        return sector;
    }

    /// <summary>
    /// Bitmap sector <paramref name="sector"/> (1-based) of an epoch, with its bits taken from
    /// <paramref name="bitmap"/> (one bit per L1 index, index 0 in bit 0 of word 0).
    /// </summary>
    public byte[] EncodeBitmapSector(ulong epoch, int sector, ReadOnlySpan<ulong> bitmap)
    {
        var bytes = new byte[SectorSize];
        int firstBit = (sector - 1) * BitsPerSector;
        for (int bit = 0; bit < BitsPerSector && firstBit + bit < L1Entries; bit++)
        {
            int index = firstBit + bit;
            if ((bitmap[index >> 6] & (1UL << (index & 63))) != 0)
                bytes[PreambleSize + (bit >> 3)] |= (byte)(1 << (bit & 7));
        }
        Seal(bytes, epoch, sector);
        return bytes;
    }

    /// <summary>What a record area holds: the tables in play, or why it cannot be trusted.</summary>
    public readonly record struct Contents(bool Valid, string Reason, ulong Epoch, long CleanFileEnd, int[] Tables);

    /// <summary>Decodes the record area (<see cref="AreaBytes"/> bytes read at <see cref="AreaOffset"/>).</summary>
    public Contents Decode(ReadOnlySpan<byte> area)
    {
        if (area.Length != AreaBytes) throw new ArgumentException($"The record area is {AreaBytes} bytes", nameof(area));
        var head = area[..SectorSize];
        if (!IsSealed(head, 0, out ulong epoch)) return Untrusted("the head sector is not a valid record head");
        long cleanEnd = BinaryPrimitives.ReadInt64LittleEndian(head[CleanEndAt..]);
        int entries = BinaryPrimitives.ReadInt32LittleEndian(head[L1EntriesAt..]);
        int sectors = BinaryPrimitives.ReadInt32LittleEndian(head[BitmapSectorsAt..]);
        if (entries != L1Entries || sectors != BitmapSectors)
            return Untrusted($"the head describes {entries} L1 entries in {sectors} sectors; the image has {L1Entries} in {BitmapSectors}");
        var tables = new List<int>();
        for (int s = 1; s <= BitmapSectors; s++)
        {
            var sector = area.Slice(s * SectorSize, SectorSize);
            if (!sector.ContainsAnyExcept((byte)0)) continue; // never written
            if (!IsSealed(sector, s, out ulong sectorEpoch)) return Untrusted($"bitmap sector {s} is damaged");
            if (sectorEpoch != epoch) continue; // left from an earlier epoch
            int firstBit = (s - 1) * BitsPerSector;
            for (int bit = 0; bit < BitsPerSector; bit++)
            {
                if ((sector[PreambleSize + (bit >> 3)] & (1 << (bit & 7))) == 0) continue;
                if (firstBit + bit >= L1Entries) return Untrusted($"bitmap sector {s} names L1 index {firstBit + bit}, past the L1 table");
                tables.Add(firstBit + bit);
            }
        }
        return new Contents(true, "", epoch, cleanEnd, tables.ToArray());
    }

    private static Contents Untrusted(string reason) => new(false, reason, 0, 0, []);

    private static void Seal(Span<byte> sector, ulong epoch, int index)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(sector[MagicAt..], Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[EpochAt..], epoch);
        BinaryPrimitives.WriteInt32LittleEndian(sector[IndexAt..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[CrcAt..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[CrcAt..], Crc(sector));
    }

    private static bool IsSealed(ReadOnlySpan<byte> sector, int index, out ulong epoch)
    {
        epoch = BinaryPrimitives.ReadUInt64LittleEndian(sector[EpochAt..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(sector[MagicAt..]) != Magic) return false;
        if (BinaryPrimitives.ReadInt32LittleEndian(sector[IndexAt..]) != index) return false;
        Span<byte> copy = stackalloc byte[SectorSize];
        sector.CopyTo(copy);
        BinaryPrimitives.WriteUInt32LittleEndian(copy[CrcAt..], 0);
        return Crc(copy) == BinaryPrimitives.ReadUInt32LittleEndian(sector[CrcAt..]);
    }

    /// <summary>CRC-32C (Castagnoli) of a sector, initial value and final XOR 0xFFFFFFFF.</summary>
    private static uint Crc(ReadOnlySpan<byte> sector)
    {
        uint crc = uint.MaxValue;
        for (int i = 0; i < sector.Length; i += 8)
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(sector[i..]));
        return ~crc;
    }
}
