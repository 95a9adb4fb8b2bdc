namespace Qed.Formats.Qcow2;

// Guest offset → host: the L1 table (in memory), L2 tables (cached), and the read path.
public sealed partial class Qcow2Image
{
    /// <summary>A run of one kind; <see cref="Host"/> is the file offset of data (at <see cref="Offset"/>) or of compressed bytes.</summary>
    internal readonly record struct Mapping(long Offset, long Length, Qcow2ClusterKind Kind, long Host, ulong Entry);

    /// <summary>How far a structure may point: the file as opened plus everything allocated since.</summary>
    private long ValidEnd => _allocator is null ? _openedEnd : _allocator.ValidEnd;

    private int L1IndexOf(long offset) => (int)(offset >> (_clusterBits + _l2Bits));
    private int L2IndexOf(long offset) => (int)((offset >> _clusterBits) & (_l2Entries - 1));

    /// <summary>Returns the L2 table for an L1 index, or null when the L1 entry is empty.</summary>
    private ValueTask<Qcow2L2Table?> GetL2Async(int l1Index, CancellationToken ct)
    {
        // A new table is cached before its L1 entry is set, so a non-zero entry always finds its table here or on disk.
        var cached = _cache.TryGet(l1Index);
        if (cached != null) return ValueTask.FromResult<Qcow2L2Table?>(cached);
        ulong entry = Volatile.Read(ref _l1[l1Index]);
        if (entry == 0) return ValueTask.FromResult<Qcow2L2Table?>(null);
        return LoadL2Async(l1Index, entry, ct);
    }

    private async ValueTask<Qcow2L2Table?> LoadL2Async(int l1Index, ulong entry, CancellationToken ct)
    {
        string? problem = Qcow2Entries.L1Problem(entry, _clusterSize, ValidEnd);
        if (problem != null)
        {
            long at = (long)_header.L1TableOffset + 8L * l1Index;
            throw new ImageFormatException($"qcow2 L1 entry {l1Index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}", $"L1[{l1Index}]", at);
        }
        long offset = (long)(entry & Qcow2Entries.OffsetMask);
        long stamp = _cache.EvictionStamp;
        var entries = await Qcow2Entries.ReadAsync(_file, offset, _l2Entries, ct).ConfigureAwait(false);
        return _cache.AddLoaded(new Qcow2L2Table(l1Index, offset, entries), stamp);
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
        if (table is null) return new Mapping(offset, max, Qcow2ClusterKind.Unallocated, -1, 0);

        int index = L2IndexOf(offset);
        ulong entry = Volatile.Read(ref table.Entries[index]);
        var (kind, host) = Classify(table, index, entry);
        long inCluster = offset & (_clusterSize - 1);
        long run = _clusterSize - inCluster;
        if (kind == Qcow2ClusterKind.Compressed) return new Mapping(offset, Math.Min(run, max), kind, host, entry);
        long expected = host + _clusterSize;
        for (int i = index + 1; run < max && i < _l2Entries; i++)
        {
            var (k, h) = Classify(table, i, Volatile.Read(ref table.Entries[i]));
            if (k != kind || (kind == Qcow2ClusterKind.Data && h != expected)) break;
            expected += _clusterSize;
            run += _clusterSize;
        }
        return new Mapping(offset, Math.Min(run, max), kind, kind == Qcow2ClusterKind.Data ? host + inCluster : -1, entry);
    }

    /// <summary>Says what an L2 entry means and where its data lives, throwing if it cannot be followed safely.</summary>
    private (Qcow2ClusterKind Kind, long Host) Classify(Qcow2L2Table table, int index, ulong entry)
    {
        string? problem = Qcow2Entries.ClassifyL2(entry, _clusterBits, _v3, ValidEnd, out var kind, out long host);
        if (problem == null) return (kind, host);
        long at = table.FileOffset + 8L * index;
        throw new ImageFormatException($"qcow2 L2 table {table.L1Index} entry {index} (file offset 0x{at:x}) holds 0x{entry:x}, which {problem}",
            $"L2[{table.L1Index}][{index}]", at);
    }

    /// <inheritdoc />
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
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
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }

    /// <summary>Reads guest bytes at <paramref name="offset"/> that lie inside mapping <paramref name="m"/>.</summary>
    private async ValueTask ReadMappedAsync(Mapping m, long offset, Memory<byte> buffer, CancellationToken ct)
    {
        switch (m.Kind)
        {
            case Qcow2ClusterKind.Data:
                await _file.ReadAsync(m.Host + (offset - m.Offset), buffer, ct).ConfigureAwait(false);
                break;
            case Qcow2ClusterKind.Zero:
                buffer.Span.Clear();
                break;
            case Qcow2ClusterKind.Compressed:
                var cluster = await _inflater.InflateAsync(m.Entry, m.Host, ct).ConfigureAwait(false);
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

    /// <inheritdoc />
    public override async ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        try
        {
            CheckRange(offset, length);
            if (length == 0) return new LayerExtent(offset, 0, ExtentKind.Unallocated, -1);
            var m = await LookupAsync(offset, length, cancellationToken).ConfigureAwait(false);
            return m.Kind switch
            {
                Qcow2ClusterKind.Data => new LayerExtent(offset, m.Length, ExtentKind.Data, m.Host),
                Qcow2ClusterKind.Compressed => new LayerExtent(offset, m.Length, ExtentKind.Data, -1), // qemu-img map gives no offset either
                Qcow2ClusterKind.Zero => new LayerExtent(offset, m.Length, ExtentKind.Zero, -1),
                _ => new LayerExtent(offset, m.Length, ExtentKind.Unallocated, -1),
            };
        }
        // An error raised below without a file name gets this image's; the filter never catches, so it goes on as thrown.
        catch (ImageFormatException e) when (e.AttachFileName(Name))
        {
            throw;
        }
    }
}
