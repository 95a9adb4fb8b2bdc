using System.IO.Compression;

namespace Qed.Formats.Qcow2;

// Guest offset → host: the L1 table (in memory), L2 tables (cached), and the read path.
public sealed partial class Qcow2Image
{
    internal enum MapKind { Unallocated, Zero, Data, Compressed }

    /// <summary>A run of one kind; <see cref="Host"/> is the file offset of data (at <see cref="Offset"/>) or of compressed bytes.</summary>
    internal readonly record struct Mapping(long Offset, long Length, MapKind Kind, long Host, ulong Entry);

    /// <summary>An L2 table in memory. Entries change only under _allocLock; readers use Volatile reads.</summary>
    private sealed class L2Table(int l1Index, long fileOffset, ulong[] entries)
    {
        public int L1Index { get; } = l1Index;
        public long FileOffset { get; } = fileOffset;
        public ulong[] Entries { get; } = entries;
        /// <summary>Changed since last written (under _cacheLock): never evicted while set.</summary>
        public bool Dirty;
    }

    private readonly object _cacheLock = new();
    private readonly Dictionary<int, L2Table> _l2Cache = new();
    private readonly int _l2CacheLimit;

    /// <summary>The last decompressed cluster (entry and bytes): sequential small reads of one compressed cluster inflate it once.</summary>
    private Tuple<ulong, byte[]>? _lastInflated;

    /// <summary>How far a structure may point: the file as opened plus everything allocated since.</summary>
    private long ValidEnd => Math.Max(_openedEnd, Volatile.Read(ref _nextFree));

    private int L1IndexOf(long offset) => (int)(offset >> (_clusterBits + _l2Bits));
    private int L2IndexOf(long offset) => (int)((offset >> _clusterBits) & (_l2Entries - 1));

    /// <summary>Returns the L2 table for an L1 index, or null when the L1 entry is empty.</summary>
    private async ValueTask<L2Table?> GetL2Async(int l1Index, CancellationToken ct)
    {
        lock (_cacheLock)
        {
            // A new table is cached before its L1 entry is set, so a non-zero entry always finds its table here or on disk.
            if (_l2Cache.TryGetValue(l1Index, out var cached)) return cached;
        }
        ulong entry = Volatile.Read(ref _l1[l1Index]);
        if (entry == 0) return null;
        long offset = (long)(entry & OffsetMask);
        string? problem =
            (entry & ~(OffsetMask | CopiedFlag)) != 0 ? "has reserved bits set" :
            offset % _clusterSize != 0 ? "is not cluster aligned" :
            offset < _clusterSize ? "points into the header" :
            offset >= ValidEnd ? "points past the end of the file" : null;
        if (problem == null && offset == 0) return null;
        if (problem != null)
        {
            long at = (long)_header.L1TableOffset + 8L * l1Index;
            throw new ImageFormatException($"qcow2 L1 entry {l1Index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}", $"L1[{l1Index}]", at);
        }
        var entries = await ReadEntriesAsync(_file, offset, _l2Entries, ct).ConfigureAwait(false);
        var table = new L2Table(l1Index, offset, entries);
        lock (_cacheLock)
        {
            if (_l2Cache.TryGetValue(l1Index, out var raced)) return raced;
            if (_l2Cache.Count >= _l2CacheLimit) EvictCleanTables();
            _l2Cache[l1Index] = table;
        }
        return table;
    }

    /// <summary>Drops clean tables until the cache is a quarter below its limit (under _cacheLock).</summary>
    private void EvictCleanTables()
    {
        int target = _l2CacheLimit * 3 / 4;
        foreach (var (key, table) in _l2Cache.ToArray())
        {
            if (_l2Cache.Count <= target) break;
            if (!table.Dirty) _l2Cache.Remove(key);
        }
    }

    /// <summary>
    /// Describes the run at <paramref name="offset"/>: at most <paramref name="length"/> bytes, inside one L2 table,
    /// one kind (data runs contiguous in the file; a compressed run is one cluster), validating every entry it passes.
    /// </summary>
    private async ValueTask<Mapping> LookupAsync(long offset, long length, CancellationToken ct)
    {
        long span = 1L << (_clusterBits + _l2Bits);
        long max = Math.Min(length, span - (offset & (span - 1)));
        var table = await GetL2Async(L1IndexOf(offset), ct).ConfigureAwait(false);
        if (table is null) return new Mapping(offset, max, MapKind.Unallocated, -1, 0);

        int index = L2IndexOf(offset);
        ulong entry = Volatile.Read(ref table.Entries[index]);
        var (kind, host) = Classify(table, index, entry);
        long inCluster = offset & (_clusterSize - 1);
        long run = _clusterSize - inCluster;
        if (kind == MapKind.Compressed) return new Mapping(offset, Math.Min(run, max), kind, host, entry);
        long expected = host + _clusterSize;
        for (int i = index + 1; run < max && i < _l2Entries; i++)
        {
            var (k, h) = Classify(table, i, Volatile.Read(ref table.Entries[i]));
            if (k != kind || (kind == MapKind.Data && h != expected)) break;
            expected += _clusterSize;
            run += _clusterSize;
        }
        return new Mapping(offset, Math.Min(run, max), kind, kind == MapKind.Data ? host + inCluster : -1, entry);
    }

    /// <summary>Says what an L2 entry means and where its data lives, throwing if it cannot be followed safely.</summary>
    private (MapKind Kind, long Host) Classify(L2Table table, int index, ulong entry)
    {
        string? problem;
        if ((entry & CompressedFlag) != 0)
        {
            int x = 62 - (_clusterBits - 8);
            long host = (long)(entry & ((1UL << x) - 1));
            problem =
                (entry & CopiedFlag) != 0 ? "is compressed but marked as copied" :
                host < _clusterSize ? "points into the header" :
                host >= ValidEnd ? "points past the end of the file" : null;
            if (problem == null) return (MapKind.Compressed, host);
        }
        else
        {
            long host = (long)(entry & OffsetMask);
            problem =
                (entry & 0x3f00_0000_0000_01feUL) != 0 ? "has reserved bits set" :
                (entry & ZeroFlag) != 0 && !_v3 ? "is a zero cluster, which version 2 does not have" :
                host % _clusterSize != 0 ? "is not cluster aligned" :
                host != 0 && host < _clusterSize ? "points into the header" :
                host >= ValidEnd ? "points past the end of the file" :
                host == 0 && (entry & CopiedFlag) != 0 && (entry & ZeroFlag) == 0 ? "has offset 0 with the copied flag (only valid with an external data file)" :
                null;
            if (problem == null)
            {
                if ((entry & ZeroFlag) != 0) return (MapKind.Zero, host == 0 ? -1 : host);
                return host == 0 ? (MapKind.Unallocated, -1) : (MapKind.Data, host);
            }
        }
        long at = table.FileOffset + 8L * index;
        throw new ImageFormatException($"qcow2 L2 table {table.L1Index} entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}",
            $"L2[{table.L1Index}][{index}]", at);
    }

    /// <inheritdoc />
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        while (buffer.Length > 0)
        {
            var m = await LookupAsync(offset, buffer.Length, cancellationToken).ConfigureAwait(false);
            int n = (int)m.Length;
            await ReadMappedAsync(m, offset, buffer[..n], cancellationToken).ConfigureAwait(false);
            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>Reads guest bytes at <paramref name="offset"/> that lie inside mapping <paramref name="m"/>.</summary>
    private async ValueTask ReadMappedAsync(Mapping m, long offset, Memory<byte> buffer, CancellationToken ct)
    {
        switch (m.Kind)
        {
            case MapKind.Data:
                await _file.ReadAsync(m.Host + (offset - m.Offset), buffer, ct).ConfigureAwait(false);
                break;
            case MapKind.Zero:
                buffer.Span.Clear();
                break;
            case MapKind.Compressed:
                var cluster = await InflateAsync(m.Entry, m.Host, ct).ConfigureAwait(false);
                cluster.AsSpan((int)(offset & (_clusterSize - 1)), buffer.Length).CopyTo(buffer.Span);
                break;
            default:
                await ReadBackingAsync(offset, buffer, ct).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>Reads what lies beneath this image: the backing image, and zeroes past its end or without one.</summary>
    private async ValueTask ReadBackingAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        long below = _backing is null ? 0 : Math.Max(0, Math.Min(buffer.Length, _backing.Size - offset));
        if (below > 0) await _backing!.ReadAsync(offset, buffer[..(int)below], ct).ConfigureAwait(false);
        buffer.Span[(int)below..].Clear();
    }

    /// <summary>Decompresses one compressed cluster (raw deflate) into a new cluster-sized array.</summary>
    private async ValueTask<byte[]> InflateAsync(ulong entry, long host, CancellationToken ct)
    {
        var last = Volatile.Read(ref _lastInflated);
        if (last != null && last.Item1 == entry) return last.Item2;
        int x = 62 - (_clusterBits - 8);
        long extraSectors = (long)((entry >> x) & ((1UL << (_clusterBits - 8)) - 1));
        int compressedLength = (int)((extraSectors + 1) * 512 - (host & 511));
        var compressed = new byte[compressedLength];
        await _file.ReadAsync(host, compressed, ct).ConfigureAwait(false);
        var cluster = new byte[_clusterSize];
        int produced = 0;
        try
        {
            using var inflater = new DeflateStream(new MemoryStream(compressed, writable: false), CompressionMode.Decompress);
            while (produced < cluster.Length)
            {
                int n = inflater.Read(cluster, produced, cluster.Length - produced);
                if (n == 0) break;
                produced += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new ImageFormatException($"The compressed cluster at file offset 0x{host:x} ({compressedLength} bytes) is not valid deflate data: {e.Message}",
                "compressed_cluster", host, e);
        }
        if (produced < cluster.Length)
            throw new ImageFormatException($"The compressed cluster at file offset 0x{host:x} decompresses to {produced} bytes, not the cluster size {_clusterSize}",
                "compressed_cluster", host);
        Volatile.Write(ref _lastInflated, Tuple.Create(entry, cluster));
        return cluster;
    }

    /// <inheritdoc />
    public override async ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0) return new LayerExtent(offset, 0, ExtentKind.Unallocated, -1);
        var m = await LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
        return m.Kind switch
        {
            MapKind.Data => new LayerExtent(offset, m.Length, ExtentKind.Data, m.Host),
            MapKind.Compressed => new LayerExtent(offset, m.Length, ExtentKind.Data, -1), // qemu-img map gives no offset either
            MapKind.Zero => new LayerExtent(offset, m.Length, ExtentKind.Zero, -1),
            _ => new LayerExtent(offset, m.Length, ExtentKind.Unallocated, -1),
        };
    }
}
