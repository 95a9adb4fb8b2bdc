using System.Buffers.Binary;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>A refcount block in memory: <see cref="Data"/> is its on-disk bytes, changed in place.</summary>
internal sealed class Qcow2RefcountBlock(long fileOffset, byte[] data)
{
    public long FileOffset { get; } = fileOffset;
    public byte[] Data { get; } = data;
    /// <summary>Changed since last written back.</summary>
    public bool Dirty;
}

/// <summary>
/// The refcount table and the refcount blocks loaded from it: reading and setting a cluster's refcount at any
/// refcount width (1 to 64 bits), linking new blocks, moving the table to a bigger one, and writing both back.
/// </summary>
/// <remarks>
/// Invariants: a block is loaded only through an entry that passed validation (aligned, past the header, inside the
/// file) and an overlap check by the caller; the in-memory table is the authority (entries, offset and size) and is
/// durable only after <see cref="WriteTableAsync"/>; a moved table is linked from the header only after the table
/// itself is durable; a refcount never exceeds what the width holds (overflow throws, changing nothing).
/// Not thread-safe: every member is called under the image's allocation lock (the caller's).
/// </remarks>
internal sealed class Qcow2Refcounts
{
    private readonly IBlockStorage _file;
    private readonly int _clusterSize;
    private readonly int _bits;
    private readonly long _perBlock;
    private ulong[] _table;
    private long _tableOffset;
    private int _tableClusters;
    private bool _tableDirty;
    private bool _tableMoved;
    private readonly Dictionary<long, Qcow2RefcountBlock> _blocks = new();

    private Qcow2Refcounts(IBlockStorage file, int clusterSize, int refcountOrder, ulong[] table, long tableOffset, int tableClusters)
    {
        _file = file;
        _clusterSize = clusterSize;
        _bits = 1 << refcountOrder;
        _perBlock = (long)clusterSize * 8 / _bits;
        _table = table;
        _tableOffset = tableOffset;
        _tableClusters = tableClusters;
    }

    /// <summary>Reads the refcount table the header names (validated by <see cref="Qcow2Header.Validate"/>).</summary>
    public static async Task<Qcow2Refcounts> LoadAsync(IBlockStorage file, Qcow2Header header, CancellationToken ct)
    {
        long offset = (long)header.RefcountTableOffset;
        int clusters = (int)header.RefcountTableClusters;
        var table = await Qcow2Entries.ReadAsync(file, offset, clusters * header.ClusterSize / 8, ct).ConfigureAwait(false);
        return new Qcow2Refcounts(file, header.ClusterSize, (int)header.RefcountOrder, table, offset, clusters);
    }

    /// <summary>Refcount width in bits.</summary>
    public int Bits => _bits;
    /// <summary>Refcounts per block.</summary>
    public long PerBlock => _perBlock;
    /// <summary>Where the table is (in memory: it may not be durable yet).</summary>
    public long TableOffset => _tableOffset;
    /// <summary>The table's size in clusters.</summary>
    public int TableClusters => _tableClusters;
    /// <summary>Entries in the table.</summary>
    public int TableLength => _table.Length;
    /// <summary>Whether the table changed since it was last written.</summary>
    public bool TableDirty => _tableDirty;
    /// <summary>Table entry <paramref name="index"/>.</summary>
    public ulong EntryAt(long index) => _table[index];
    /// <summary>The block index covering host cluster <paramref name="cluster"/>.</summary>
    public long BlockIndexOf(long cluster) => cluster / _perBlock;
    /// <summary>The loaded blocks by index.</summary>
    public IEnumerable<KeyValuePair<long, Qcow2RefcountBlock>> LoadedBlocks => _blocks;

    /// <summary>The loaded block <paramref name="index"/>, if loaded.</summary>
    public bool TryGetLoaded(long index, out Qcow2RefcountBlock block) => _blocks.TryGetValue(index, out block!);

    /// <summary>
    /// Where block <paramref name="index"/> lives, or -1 when it has none (beyond the table, or an empty entry).
    /// </summary>
    /// <exception cref="ImageFormatException">The entry cannot be followed; the message names entry, value and offset.</exception>
    public long BlockOffset(long index, long validEnd)
    {
        if (index >= _table.Length) return -1;
        ulong entry = _table[index];
        if (entry == 0) return -1;
        string? problem = Qcow2Entries.RefTableProblem(entry, _clusterSize, validEnd);
        if (problem != null)
        {
            long at = _tableOffset + 8 * index;
            throw new ImageFormatException($"qcow2 refcount table entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}",
                $"refcount_table[{index}]", at);
        }
        return (long)entry;
    }

    /// <summary>Reads block <paramref name="index"/> from <paramref name="offset"/> (as <see cref="BlockOffset"/> gave) and keeps it.</summary>
    public async ValueTask<Qcow2RefcountBlock> LoadBlockAsync(long index, long offset, CancellationToken ct)
    {
        var data = new byte[_clusterSize];
        await _file.ReadAsync(offset, data, ct).ConfigureAwait(false);
        var block = new Qcow2RefcountBlock(offset, data);
        _blocks[index] = block;
        return block;
    }

    /// <summary>Keeps a new, all-zero block <paramref name="index"/> at <paramref name="offset"/> (dirty; linked by <see cref="Link"/>).</summary>
    public Qcow2RefcountBlock AddNewBlock(long index, long offset)
    {
        var block = new Qcow2RefcountBlock(offset, new byte[_clusterSize]) { Dirty = true };
        _blocks[index] = block;
        return block;
    }

    /// <summary>Points table entry <paramref name="index"/> at the block at <paramref name="offset"/>.</summary>
    public void Link(long index, long offset)
    {
        _table[index] = (ulong)offset;
        _tableDirty = true;
    }

    /// <summary>The refcount of host cluster <paramref name="cluster"/>, which <paramref name="block"/> covers.</summary>
    public ulong Get(Qcow2RefcountBlock block, long cluster)
    {
        long i = cluster % _perBlock;
        var d = block.Data.AsSpan();
        switch (_bits)
        {
            case 64: return BinaryPrimitives.ReadUInt64BigEndian(d[(int)(i * 8)..]);
            case 32: return BinaryPrimitives.ReadUInt32BigEndian(d[(int)(i * 4)..]);
            case 16: return BinaryPrimitives.ReadUInt16BigEndian(d[(int)(i * 2)..]);
            case 8: return d[(int)i];
            default:
                long bit = i * _bits; // sub-byte widths: bit 0 is the least significant bit of the byte
                return (ulong)((d[(int)(bit / 8)] >> (int)(bit % 8)) & ((1 << _bits) - 1));
        }
    }

    /// <summary>Sets the refcount of host cluster <paramref name="cluster"/>, which <paramref name="block"/> covers, and marks the block dirty.</summary>
    /// <exception cref="InvalidOperationException">The value does not fit the refcount width.</exception>
    public void Set(Qcow2RefcountBlock block, long cluster, ulong value)
    {
        if (_bits < 64 && value >= 1UL << _bits)
            throw new InvalidOperationException($"Refcount overflow at cluster {cluster} (refcount_bits = {_bits})");
        long i = cluster % _perBlock;
        var d = block.Data.AsSpan();
        switch (_bits)
        {
            case 64: BinaryPrimitives.WriteUInt64BigEndian(d[(int)(i * 8)..], value); break;
            case 32: BinaryPrimitives.WriteUInt32BigEndian(d[(int)(i * 4)..], (uint)value); break;
            case 16: BinaryPrimitives.WriteUInt16BigEndian(d[(int)(i * 2)..], (ushort)value); break;
            case 8: d[(int)i] = (byte)value; break;
            default:
                long bit = i * _bits;
                int mask = ((1 << _bits) - 1) << (int)(bit % 8);
                d[(int)(bit / 8)] = (byte)((d[(int)(bit / 8)] & ~mask) | (((int)value << (int)(bit % 8)) & mask));
                break;
        }
        block.Dirty = true;
    }

    /// <summary>Sets the refcount of host cluster <paramref name="cluster"/>, whose block must be loaded.</summary>
    public void Set(long cluster, ulong value) => Set(_blocks[cluster / _perBlock], cluster, value);

    /// <summary>
    /// Replaces the in-memory table with a bigger one holding index <paramref name="neededIndex"/> (at least twice as
    /// big), entries copied; returns its size in clusters. The caller allocates its clusters (a block that allocation
    /// makes goes into the new table) and then calls <see cref="MoveTable"/>.
    /// </summary>
    /// <exception cref="IOException">The table would exceed the largest size the format allows: the image is full.</exception>
    public int Enlarge(long neededIndex, string imageName)
    {
        long entries = Math.Max(neededIndex + 1, (long)_table.Length * 2);
        long clusters = (entries * 8 + _clusterSize - 1) / _clusterSize;
        if (clusters * _clusterSize > Qcow2Header.MaxRefcountTableBytes)
            throw new IOException($"The qcow2 image '{imageName}' is full: its refcount table would exceed {Qcow2Header.MaxRefcountTableBytes} bytes");
        var table = new ulong[clusters * _clusterSize / 8];
        Array.Copy(_table, table, _table.Length);
        _table = table;
        return (int)clusters;
    }

    /// <summary>Places the table at <paramref name="offset"/> (<paramref name="clusters"/> clusters); the header learns at write-back.</summary>
    public void MoveTable(long offset, int clusters)
    {
        _tableOffset = offset;
        _tableClusters = clusters;
        _tableDirty = true;
        _tableMoved = true;
    }

    /// <summary>The index of a table entry naming host cluster <paramref name="cluster"/>, or -1.</summary>
    public int IndexPointingAt(long cluster, int clusterBits)
    {
        for (int i = 0; i < _table.Length; i++)
            if ((long)((_table[i] & ~Qcow2Entries.RefTableReservedMask) >> clusterBits) == cluster) return i;
        return -1;
    }

    /// <summary>Writes every dirty block (no sync); returns whether there was one.</summary>
    public async ValueTask<bool> WriteDirtyBlocksAsync(CancellationToken ct)
    {
        bool any = false;
        foreach (var block in _blocks.Values)
        {
            if (!block.Dirty) continue;
            await _file.WriteAsync(block.FileOffset, block.Data, ct).ConfigureAwait(false);
            block.Dirty = false;
            any = true;
        }
        return any;
    }

    /// <summary>Writes the table and syncs; if it moved, then writes the header fields naming it and syncs again.</summary>
    public async ValueTask WriteTableAsync(CancellationToken ct)
    {
        await _file.WriteAsync(_tableOffset, Qcow2Entries.Encode(_table, 0, _table.Length), ct).ConfigureAwait(false);
        await _file.FlushAsync(ct).ConfigureAwait(false);
        if (_tableMoved)
        {
            var fields = new byte[12]; // refcount_table_offset and refcount_table_clusters are adjacent: one write
            BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)_tableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(fields.AsSpan(8), (uint)_tableClusters);
            await _file.WriteAsync(Qcow2Header.RefcountTableOffsetOffset, fields, ct).ConfigureAwait(false);
            await _file.FlushAsync(ct).ConfigureAwait(false);
            _tableMoved = false;
        }
        _tableDirty = false;
    }
}
