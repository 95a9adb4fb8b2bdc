using System.Buffers.Binary;

namespace Qed.Formats.Qcow2;

// Refcounts: the refcount table and blocks (all under _allocLock), allocation at the end of the file, and frees that
// wait until no durable mapping points at the cluster. Invariant on disk at every instant: a cluster's refcount is at
// least the number of durable references to it, so a crash can leak clusters but never leave one referenced and free.
public sealed partial class Qcow2Image
{
    private sealed class RefBlock(long fileOffset, byte[] data)
    {
        public long FileOffset { get; } = fileOffset;
        public byte[] Data { get; } = data;
        public bool Dirty;
    }

    private ulong[] _refTable = [];
    private long _refTableOffset;
    private int _refTableClusters;
    private bool _refTableDirty;
    private bool _refTableMoved;
    private readonly Dictionary<long, RefBlock> _refBlocks = new();
    private int _refBits;
    private long _refsPerBlock;
    /// <summary>Where the next cluster is taken from; only grows. Under _allocLock (read with Volatile elsewhere).</summary>
    private long _nextFree;
    /// <summary>Host byte ranges whose references are gone from memory but maybe not from disk: freed after the next L2 write-back.</summary>
    private readonly List<(long Offset, long Length)> _pendingFrees = new();

    private async Task LoadRefcountTableAsync(CancellationToken ct)
    {
        _refBits = 1 << (int)_header.RefcountOrder;
        _refsPerBlock = (long)_clusterSize * 8 / _refBits;
        _refTableOffset = (long)_header.RefcountTableOffset;
        _refTableClusters = (int)_header.RefcountTableClusters;
        _refTable = await ReadEntriesAsync(_file, _refTableOffset, _refTableClusters * _clusterSize / 8, ct).ConfigureAwait(false);
    }

    private async ValueTask<RefBlock?> GetRefBlockAsync(long index, CancellationToken ct)
    {
        if (_refBlocks.TryGetValue(index, out var block)) return block;
        if (index >= _refTable.Length) return null;
        ulong entry = _refTable[index];
        if (entry == 0) return null;
        string? problem =
            (entry & 0x1ff) != 0 ? "has reserved bits set" :
            entry % (ulong)_clusterSize != 0 ? "is not cluster aligned" :
            entry < (ulong)_clusterSize ? "points into the header" :
            entry >= (ulong)ValidEnd ? "points past the end of the file" : null;
        if (problem != null)
        {
            long at = _refTableOffset + 8 * index;
            throw new ImageFormatException($"qcow2 refcount table entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}",
                $"refcount_table[{index}]", at);
        }
        await CheckRefBlockAsync(index, (long)entry).ConfigureAwait(false); // every loaded block may be written back
        var data = new byte[_clusterSize];
        await _file.ReadAsync((long)entry, data, ct).ConfigureAwait(false);
        block = new RefBlock((long)entry, data);
        _refBlocks[index] = block;
        return block;
    }

    private ulong GetRefcount(RefBlock block, long cluster)
    {
        long i = cluster % _refsPerBlock;
        var d = block.Data.AsSpan();
        switch (_refBits)
        {
            case 64: return BinaryPrimitives.ReadUInt64BigEndian(d[(int)(i * 8)..]);
            case 32: return BinaryPrimitives.ReadUInt32BigEndian(d[(int)(i * 4)..]);
            case 16: return BinaryPrimitives.ReadUInt16BigEndian(d[(int)(i * 2)..]);
            case 8: return d[(int)i];
            default:
                long bit = i * _refBits; // sub-byte widths: bit 0 is the least significant bit of the byte
                return (ulong)((d[(int)(bit / 8)] >> (int)(bit % 8)) & ((1 << _refBits) - 1));
        }
    }

    private void SetRefcount(RefBlock block, long cluster, ulong value)
    {
        if (_refBits < 64 && value >= 1UL << _refBits)
            throw new InvalidOperationException($"Refcount overflow at cluster {cluster} (refcount_bits = {_refBits})");
        long i = cluster % _refsPerBlock;
        var d = block.Data.AsSpan();
        switch (_refBits)
        {
            case 64: BinaryPrimitives.WriteUInt64BigEndian(d[(int)(i * 8)..], value); break;
            case 32: BinaryPrimitives.WriteUInt32BigEndian(d[(int)(i * 4)..], (uint)value); break;
            case 16: BinaryPrimitives.WriteUInt16BigEndian(d[(int)(i * 2)..], (ushort)value); break;
            case 8: d[(int)i] = (byte)value; break;
            default:
                long bit = i * _refBits;
                int mask = ((1 << _refBits) - 1) << (int)(bit % 8);
                d[(int)(bit / 8)] = (byte)((d[(int)(bit / 8)] & ~mask) | (((int)value << (int)(bit % 8)) & mask));
                break;
        }
        block.Dirty = true;
    }

    /// <summary>Makes sure the refcount block for block index <paramref name="index"/> exists (under _allocLock).</summary>
    private async ValueTask<RefBlock> EnsureRefBlockAsync(long index, CancellationToken ct)
    {
        var block = await GetRefBlockAsync(index, ct).ConfigureAwait(false);
        if (block != null) return block;
        if (index >= _refTable.Length)
        {
            await GrowRefTableAsync(index, ct).ConfigureAwait(false);
            return await EnsureRefBlockAsync(index, ct).ConfigureAwait(false); // growing may have created it
        }
        long cluster = _nextFree / _clusterSize;
        long at;
        if (cluster / _refsPerBlock == index)
        {
            // The block covers its own cluster (the usual case): it counts itself. A missing block means every
            // cluster it covers has refcount 0, so the cluster is free.
            at = _nextFree;
            await CheckNewClustersAsync($"for refcount block {index}", at, _clusterSize).ConfigureAwait(false);
            Volatile.Write(ref _nextFree, _nextFree + _clusterSize);
            block = new RefBlock(at, new byte[_clusterSize]) { Dirty = true };
            _refBlocks[index] = block;
            SetRefcount(block, cluster, 1);
        }
        else
        {
            at = await AllocateRunAsync(1, ct).ConfigureAwait(false);
            await CheckNewClustersAsync($"for refcount block {index}", at, _clusterSize).ConfigureAwait(false);
            if (_refBlocks.TryGetValue(index, out var made))
            {
                // Allocating created this very block on the way: give the cluster back (nothing ever referenced it).
                var owner = _refBlocks[at / _clusterSize / _refsPerBlock];
                SetRefcount(owner, at / _clusterSize, 0);
                return made;
            }
            block = new RefBlock(at, new byte[_clusterSize]) { Dirty = true };
            _refBlocks[index] = block;
        }
        _metadata.Add(at >> _clusterBits, Qcow2Metadata.RefcountBlock);
        await CheckRefTableAsync().ConfigureAwait(false);
        _refTable[index] = (ulong)at;
        _refTableDirty = true;
        return block;
    }

    /// <summary>Moves the refcount table to a bigger one at the end of the file (written back, then linked by the header, at flush).</summary>
    private async ValueTask GrowRefTableAsync(long neededIndex, CancellationToken ct)
    {
        long entries = Math.Max(neededIndex + 1, (long)_refTable.Length * 2);
        long clusters = (entries * 8 + _clusterSize - 1) / _clusterSize;
        if (clusters * _clusterSize > Qcow2Header.MaxRefcountTableBytes)
            throw new IOException($"The qcow2 image '{Name}' is full: its refcount table would exceed {Qcow2Header.MaxRefcountTableBytes} bytes");
        var table = new ulong[clusters * _clusterSize / 8];
        Array.Copy(_refTable, table, _refTable.Length);
        long oldOffset = _refTableOffset, oldClusters = _refTableClusters;
        _refTable = table; // before allocating: a block the allocation makes goes into the new table
        long at = await AllocateRunAsync((int)clusters, ct).ConfigureAwait(false);
        await CheckNewClustersAsync("for the refcount table", at, clusters * _clusterSize).ConfigureAwait(false);
        for (long c = 0; c < clusters; c++) _metadata.Add((at >> _clusterBits) + c, Qcow2Metadata.RefcountTable);
        _refTableOffset = at;
        _refTableClusters = (int)clusters;
        _refTableDirty = true;
        _refTableMoved = true;
        _pendingFrees.Add((oldOffset, oldClusters * _clusterSize));
    }

    /// <summary>
    /// Takes <paramref name="count"/> contiguous clusters at the end of the file and sets their refcounts to 1 in
    /// memory (under _allocLock). Clusters that already carry a refcount (leaked past the end) are taken over.
    /// </summary>
    private async ValueTask<long> AllocateRunAsync(int count, CancellationToken ct)
    {
        while (true)
        {
            long start = _nextFree;
            long first = start / _clusterSize, last = first + count - 1;
            for (long b = first / _refsPerBlock; b <= last / _refsPerBlock; b++)
            {
                await EnsureRefBlockAsync(b, ct).ConfigureAwait(false);
                if (_nextFree != start) break;
            }
            if (_nextFree != start) continue; // a new refcount block took the start: try again after it
            // A refcount already set here is a leak from an earlier session (this one never gave these clusters out,
            // and nothing may point past the end of the file): taking the cluster over sets it to 1. Skipping such
            // clusters instead would let a corrupt block full of counts push the file end arbitrarily far.
            for (long c = first; c <= last; c++)
                SetRefcount(_refBlocks[c / _refsPerBlock], c, 1);
            Volatile.Write(ref _nextFree, start + (long)count * _clusterSize);
            return start;
        }
    }

    /// <summary>Queues the host space an L2 entry held, to be freed once the entry's replacement is durable.</summary>
    private void QueueFreeOf(ulong entry)
    {
        if ((entry & CompressedFlag) != 0)
        {
            int x = 62 - (_clusterBits - 8);
            long host = (long)(entry & ((1UL << x) - 1));
            long extraSectors = (long)((entry >> x) & ((1UL << (_clusterBits - 8)) - 1));
            _pendingFrees.Add((host, (extraSectors + 1) * 512 - (host & 511)));
            return;
        }
        long offset = (long)(entry & OffsetMask);
        if (offset != 0) _pendingFrees.Add((offset, _clusterSize));
    }

    /// <summary>Decrements the refcount of every cluster each pending range touches (under _allocLock, after the L2 write-back).</summary>
    private async ValueTask ApplyPendingFreesAsync(CancellationToken ct)
    {
        foreach (var (offset, length) in _pendingFrees)
        {
            for (long c = offset / _clusterSize; c <= (offset + length - 1) / _clusterSize; c++)
            {
                var block = await GetRefBlockAsync(c / _refsPerBlock, ct).ConfigureAwait(false);
                ulong count = block == null ? 0 : GetRefcount(block, c);
                if (count == 0)
                    throw new ImageFormatException($"qcow2 refcount of the cluster at file offset 0x{c * _clusterSize:x} is already 0 while a reference to it is freed",
                        "refcount", c * _clusterSize);
                SetRefcount(block!, c, count - 1);
            }
        }
        _pendingFrees.Clear();
    }
}
