using System.Buffers.Binary;

namespace Qed.Formats.Qcow2;

// Overlap checks, as QEMU's: before guest data or a table is written at a file offset, the offset is checked against
// the metadata map (Qcow2MetadataMap). A write that would land on other metadata fails with an ImageFormatException
// naming the entry that points there and what it overlaps; the image is marked corrupt (the corrupt bit in version 3,
// as QEMU sets it) and refuses every later write and flush of this session. Nothing is written by the failing request.
//
// Where the checks sit: in-place data writes and zeroings (every time: one binary search), newly allocated clusters,
// an L2 table or refcount block when it is about to change in memory, the L1 and refcount tables on their first change
// (they cannot start overlapping later: new metadata comes from past the end of the file, and a new cluster landing on
// a table some entry names is caught when allocated), and each write-back of a table (cheap, and catches anything the
// earlier checks did not see coming).
public sealed partial class Qcow2Image
{
    /// <summary>The metadata areas, for writers only (built after the refcount table is loaded).</summary>
    private Qcow2MetadataMap _metadata = null!;
    private bool _l1Verified, _refTableVerified;

    /// <summary>Records where every table the header, L1 and refcount table name lives (writers only, at open).</summary>
    /// <remarks>
    /// Entries pointing past the end of the file are recorded too: such an entry becomes followable once the file has
    /// grown past it, and recording it makes the allocation of that cluster fail instead of aliasing a table.
    /// Internal snapshots are not recorded: an image with snapshots is never opened for writing.
    /// </remarks>
    private void BuildMetadataMap()
    {
        var builder = new Qcow2MetadataMap.Builder();
        builder.Add(0, 1, Qcow2Metadata.Header);
        long l1Offset = (long)_header.L1TableOffset;
        if (_l1.Length > 0) builder.Add(l1Offset >> _clusterBits, ClustersTouched(l1Offset, _l1.Length * 8L), Qcow2Metadata.ActiveL1);
        builder.Add(_refTableOffset >> _clusterBits, _refTableClusters, Qcow2Metadata.RefcountTable);
        foreach (ulong entry in _l1)
            if ((entry & OffsetMask) != 0) builder.Add((long)((entry & OffsetMask) >> _clusterBits), 1, Qcow2Metadata.ActiveL2);
        foreach (ulong entry in _refTable)
            if ((entry & ~0x1ffUL) != 0) builder.Add((long)((entry & ~0x1ffUL) >> _clusterBits), 1, Qcow2Metadata.RefcountBlock);
        _metadata = builder.Build();
    }

    private long ClustersTouched(long offset, long length) =>
        length <= 0 ? 0 : ((offset + length - 1) >> _clusterBits) - (offset >> _clusterBits) + 1;

    /// <summary>
    /// Fails when guest bytes [<paramref name="guest"/>, +<paramref name="length"/>), mapped in place to the file at
    /// <paramref name="host"/>, would land on metadata. The fast path is one binary search and allocates nothing.
    /// </summary>
    private ValueTask CheckDataWriteAsync(long guest, long host, long length, CancellationToken ct)
    {
        if (!_metadata.Overlaps(host, length, _clusterBits, Qcow2Metadata.None, out var kind, out long cluster))
            return ValueTask.CompletedTask;
        return DataOverlapAsync(guest, host, kind, cluster, ct);
    }

    private async ValueTask DataOverlapAsync(long guest, long host, Qcow2Metadata kind, long cluster, CancellationToken ct)
    {
        long at = guest + Math.Max(0, (cluster << _clusterBits) - host); // the first guest byte on that cluster
        var table = await GetL2Async(L1IndexOf(at), ct).ConfigureAwait(false);
        int index = L2IndexOf(at);
        long entryAt = table!.FileOffset + 8L * index;
        ulong entry = Volatile.Read(ref table.Entries[index]);
        throw await CorruptAsync(
            $"qcow2 L2 table {table.L1Index} entry {index} (file offset 0x{entryAt:x}) holds 0x{entry:x}: guest offset 0x{at & ~(long)(_clusterSize - 1):x} there",
            kind, cluster, $"L2[{table.L1Index}][{index}]", entryAt).ConfigureAwait(false);
    }

    /// <summary>Fails when clusters just allocated (<paramref name="purpose"/> says what for) are where some table entry places metadata.</summary>
    private async ValueTask CheckNewClustersAsync(string purpose, long host, long length)
    {
        if (!_metadata.Overlaps(host, length, _clusterBits, Qcow2Metadata.None, out var kind, out long cluster)) return;
        var (field, at, what) = Referrer(kind, cluster);
        throw await CorruptAsync(
            $"the new cluster at file offset 0x{cluster << _clusterBits:x} {purpose} (past the end of the file as opened)",
            kind, cluster, field, at, $", where {what} (file offset 0x{at:x}) places it").ConfigureAwait(false);
    }

    /// <summary>Fails when the L2 table of <paramref name="table"/>'s L1 index, about to change, lies on other metadata (under _allocLock).</summary>
    private async ValueTask CheckL2ForUpdateAsync(L2Table table)
    {
        if (!_metadata.Overlaps(table.FileOffset, _clusterSize, _clusterBits, Qcow2Metadata.ActiveL2, out var kind, out long cluster)) return;
        long at = (long)_header.L1TableOffset + 8L * table.L1Index;
        throw await CorruptAsync($"qcow2 L1 entry {table.L1Index} (file offset 0x{at:x}) holds 0x{Volatile.Read(ref _l1[table.L1Index]):x}: L2 table {table.L1Index} there",
            kind, cluster, $"L1[{table.L1Index}]", at).ConfigureAwait(false);
    }

    /// <summary>Fails when refcount block <paramref name="index"/> at <paramref name="offset"/>, about to change, lies on other metadata (under _allocLock).</summary>
    private async ValueTask CheckRefBlockAsync(long index, long offset)
    {
        if (!_metadata.Overlaps(offset, _clusterSize, _clusterBits, Qcow2Metadata.RefcountBlock, out var kind, out long cluster)) return;
        long at = _refTableOffset + 8 * index;
        throw await CorruptAsync($"qcow2 refcount table entry {index} (file offset 0x{at:x}) holds 0x{offset:x}: refcount block {index} there",
            kind, cluster, $"refcount_table[{index}]", at).ConfigureAwait(false);
    }

    /// <summary>Fails when the active L1 table lies on other metadata; checked once, before its first change (under _allocLock).</summary>
    private async ValueTask CheckL1Async()
    {
        if (_l1Verified) return;
        long offset = (long)_header.L1TableOffset;
        if (_metadata.Overlaps(offset, _l1.Length * 8L, _clusterBits, Qcow2Metadata.ActiveL1, out var kind, out long cluster))
            throw await CorruptAsync($"the active L1 table (l1_table_offset = 0x{offset:x}, l1_size = {_l1.Length})",
                kind, cluster, "l1_table_offset", Qcow2Header.L1TableOffsetOffset).ConfigureAwait(false);
        _l1Verified = true;
    }

    /// <summary>Fails when the refcount table lies on other metadata; checked once, before its first change in place (under _allocLock).</summary>
    private async ValueTask CheckRefTableAsync()
    {
        if (_refTableVerified) return;
        if (_metadata.Overlaps(_refTableOffset, (long)_refTableClusters << _clusterBits, _clusterBits, Qcow2Metadata.RefcountTable, out var kind, out long cluster))
            throw await CorruptAsync($"the refcount table (refcount_table_offset = 0x{_refTableOffset:x}, {_refTableClusters} cluster(s))",
                kind, cluster, "refcount_table_offset", Qcow2Header.RefcountTableOffsetOffset).ConfigureAwait(false);
        _refTableVerified = true;
    }

    /// <summary>Checks every table a write-back is about to write, before it writes any (under _allocLock).</summary>
    private async ValueTask CheckWriteBackAsync()
    {
        foreach (var (index, block) in _refBlocks)
            if (block.Dirty) await CheckRefBlockAsync(index, block.FileOffset).ConfigureAwait(false);
        if (_refTableDirty) await CheckRefTableAsync().ConfigureAwait(false);
        foreach (var table in _dirtyL2) await CheckL2ForUpdateAsync(table).ConfigureAwait(false);
        if (_dirtyL1.Count > 0) await CheckL1Async().ConfigureAwait(false);
        // The blocks the frees of the last step will change are loaded, and so checked, now: a bad one (or a bad
        // refcount table entry) then fails the write-back before it has written anything.
        foreach (var (offset, length) in _pendingFrees)
            for (long b = offset / _clusterSize / _refsPerBlock; b <= (offset + length - 1) / _clusterSize / _refsPerBlock; b++)
                await GetRefBlockAsync(b, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>The entry that places metadata of <paramref name="kind"/> at <paramref name="cluster"/>: field, file offset and a description.</summary>
    private (string Field, long At, string What) Referrer(Qcow2Metadata kind, long cluster)
    {
        if (kind == Qcow2Metadata.ActiveL2)
            for (int i = 0; i < _l1.Length; i++)
                if ((long)((Volatile.Read(ref _l1[i]) & OffsetMask) >> _clusterBits) == cluster)
                    return ($"L1[{i}]", (long)_header.L1TableOffset + 8L * i, $"L1 entry {i}");
        if (kind == Qcow2Metadata.RefcountBlock)
            for (int i = 0; i < _refTable.Length; i++)
                if ((long)((_refTable[i] & ~0x1ffUL) >> _clusterBits) == cluster)
                    return ($"refcount_table[{i}]", _refTableOffset + 8L * i, $"refcount table entry {i}");
        return kind == Qcow2Metadata.RefcountTable
            ? ("refcount_table_offset", Qcow2Header.RefcountTableOffsetOffset, "the header's refcount_table_offset")
            : ("l1_table_offset", Qcow2Header.L1TableOffsetOffset, "the header's l1_table_offset");
    }

    /// <summary>
    /// Builds the error for a write that would land on metadata, and marks the image corrupt: the first such error is
    /// kept (later writes and flushes are refused with it) and, in version 3, sets the corrupt bit in the header.
    /// </summary>
    private async ValueTask<ImageFormatException> CorruptAsync(string subject, Qcow2Metadata kind, long cluster, string field, long fileOffset, string detail = "")
    {
        var error = new ImageFormatException(
            $"{subject} overlaps the {Qcow2MetadataMap.Describe(kind)} at file offset 0x{cluster << _clusterBits:x}{detail}: preventing invalid write on metadata; '{Name}' is now marked corrupt (see 'qemu-img check')",
            field, fileOffset);
        if (Interlocked.CompareExchange(ref _failure, error, null) == null && _v3)
        {
            var bits = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(bits, (ulong)(_header.IncompatibleFeatures | Qcow2IncompatibleFeatures.Corrupt));
            try
            {
                await _file.WriteAsync(Qcow2Header.IncompatibleOffset, bits, CancellationToken.None).ConfigureAwait(false);
                await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The request fails with the overlap either way, and this session refuses every later write; a file
                // that cannot take the bit is left as it was.
            }
        }
        return error;
    }
}
