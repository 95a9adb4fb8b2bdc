namespace Qed.Formats.Qcow2;

/// <summary>
/// QEMU's overlap checks for a writable qcow2 image: before guest data or a table is written at a file offset, the
/// offset is checked against the <see cref="Qcow2MetadataMap"/>. A write that would land on other metadata fails with
/// an <see cref="ImageFormatException"/> naming the entry that points there and what it overlaps, and the image is
/// marked corrupt through the <see cref="Qcow2FailureLatch"/>; nothing is written by the failing request.
/// </summary>
/// <remarks>
/// Where the checks sit: in-place data writes and zeroings (every time: one binary search, no allocation), newly
/// allocated clusters, an L2 table or refcount block when it is about to change in memory, the L1 and refcount tables
/// on their first change (they cannot start overlapping later: new metadata comes from past the end of the file, and a
/// new cluster landing on a table some entry names is caught when allocated), and each write-back of a table.
/// <para>Invariants: the map only grows (tables made this session are added when made); the L1 and refcount tables,
/// once verified, stay verified. The map's lookups are lock-free; additions and the verified flags are under the
/// image's allocation lock (the caller's).</para>
/// </remarks>
internal sealed class Qcow2OverlapGuard
{
    private readonly Qcow2MetadataMap _map;
    private readonly Qcow2FailureLatch _failure;
    private readonly Qcow2Refcounts _refcounts;
    private readonly ulong[] _l1;
    private readonly long _l1Offset;
    private readonly int _clusterBits;
    private readonly string _name;
    private bool _l1Verified, _refTableVerified;

    /// <summary>
    /// Records where every table the header, L1 and refcount table name lives. Entries pointing past the end of the
    /// file are recorded too: such an entry becomes followable once the file has grown past it, and recording it makes
    /// the allocation of that cluster fail instead of aliasing a table. Internal snapshots are not recorded: an image
    /// with snapshots is never opened for writing.
    /// </summary>
    public Qcow2OverlapGuard(Qcow2Header header, ulong[] l1, Qcow2Refcounts refcounts, Qcow2FailureLatch failure, string name)
    {
        _l1 = l1;
        _l1Offset = (long)header.L1TableOffset;
        _clusterBits = (int)header.ClusterBits;
        _refcounts = refcounts;
        _failure = failure;
        _name = name;
        var builder = new Qcow2MetadataMap.Builder();
        builder.Add(0, 1, Qcow2Metadata.Header);
        if (l1.Length > 0) builder.Add(_l1Offset >> _clusterBits, ClustersTouched(_l1Offset, l1.Length * 8L), Qcow2Metadata.ActiveL1);
        builder.Add(refcounts.TableOffset >> _clusterBits, refcounts.TableClusters, Qcow2Metadata.RefcountTable);
        foreach (ulong entry in l1)
            if ((entry & Qcow2Entries.OffsetMask) != 0) builder.Add((long)((entry & Qcow2Entries.OffsetMask) >> _clusterBits), 1, Qcow2Metadata.ActiveL2);
        for (long i = 0; i < refcounts.TableLength; i++)
        {
            ulong entry = refcounts.EntryAt(i);
            if ((entry & ~Qcow2Entries.RefTableReservedMask) != 0)
                builder.Add((long)((entry & ~Qcow2Entries.RefTableReservedMask) >> _clusterBits), 1, Qcow2Metadata.RefcountBlock);
        }
        _map = builder.Build();
    }

    private long ClustersTouched(long offset, long length) =>
        length <= 0 ? 0 : ((offset + length - 1) >> _clusterBits) - (offset >> _clusterBits) + 1;

    /// <summary>Records a table made this session (under the allocation lock).</summary>
    public void Add(long cluster, Qcow2Metadata kind) => _map.Add(cluster, kind);

    /// <summary>Whether file bytes [<paramref name="host"/>, +<paramref name="length"/>) touch any metadata (the data-write fast path).</summary>
    public bool OverlapsAny(long host, long length, out Qcow2Metadata kind, out long cluster) =>
        _map.Overlaps(host, length, _clusterBits, Qcow2Metadata.None, out kind, out cluster);

    /// <summary>Fails when clusters just allocated (<paramref name="purpose"/> says what for) are where some table entry places metadata.</summary>
    public async ValueTask CheckNewClustersAsync(string purpose, long host, long length)
    {
        if (!_map.Overlaps(host, length, _clusterBits, Qcow2Metadata.None, out var kind, out long cluster)) return;
        var (field, at, what) = Referrer(kind, cluster);
        throw await CorruptAsync(
            $"the new cluster at file offset 0x{cluster << _clusterBits:x} {purpose} (past the end of the file as opened)",
            kind, cluster, field, at, $", where {what} (file offset 0x{at:x}) places it").ConfigureAwait(false);
    }

    /// <summary>Fails when L2 table <paramref name="table"/>, about to change, lies on other metadata.</summary>
    public async ValueTask CheckL2ForUpdateAsync(Qcow2L2Table table)
    {
        if (!_map.Overlaps(table.FileOffset, 1L << _clusterBits, _clusterBits, Qcow2Metadata.ActiveL2, out var kind, out long cluster)) return;
        long at = _l1Offset + 8L * table.L1Index;
        throw await CorruptAsync($"qcow2 L1 entry {table.L1Index} (file offset 0x{at:x}) holds 0x{Volatile.Read(ref _l1[table.L1Index]):x}: L2 table {table.L1Index} there",
            kind, cluster, $"L1[{table.L1Index}]", at).ConfigureAwait(false);
    }

    /// <summary>Fails when refcount block <paramref name="index"/> at <paramref name="offset"/>, about to be loaded or changed, lies on other metadata.</summary>
    public async ValueTask CheckRefBlockAsync(long index, long offset)
    {
        if (!_map.Overlaps(offset, 1L << _clusterBits, _clusterBits, Qcow2Metadata.RefcountBlock, out var kind, out long cluster)) return;
        long at = _refcounts.TableOffset + 8 * index;
        throw await CorruptAsync($"qcow2 refcount table entry {index} (file offset 0x{at:x}) holds 0x{offset:x}: refcount block {index} there",
            kind, cluster, $"refcount_table[{index}]", at).ConfigureAwait(false);
    }

    /// <summary>Fails when the active L1 table lies on other metadata; checked once, before its first change.</summary>
    public async ValueTask CheckL1Async()
    {
        if (_l1Verified) return;
        if (_map.Overlaps(_l1Offset, _l1.Length * 8L, _clusterBits, Qcow2Metadata.ActiveL1, out var kind, out long cluster))
            throw await CorruptAsync($"the active L1 table (l1_table_offset = 0x{_l1Offset:x}, l1_size = {_l1.Length})",
                kind, cluster, "l1_table_offset", Qcow2Header.L1TableOffsetOffset).ConfigureAwait(false);
        _l1Verified = true;
    }

    /// <summary>Fails when the refcount table lies on other metadata; checked once, before its first change in place.</summary>
    public async ValueTask CheckRefTableAsync()
    {
        if (_refTableVerified) return;
        long offset = _refcounts.TableOffset;
        int clusters = _refcounts.TableClusters;
        if (_map.Overlaps(offset, (long)clusters << _clusterBits, _clusterBits, Qcow2Metadata.RefcountTable, out var kind, out long cluster))
            throw await CorruptAsync($"the refcount table (refcount_table_offset = 0x{offset:x}, {clusters} cluster(s))",
                kind, cluster, "refcount_table_offset", Qcow2Header.RefcountTableOffsetOffset).ConfigureAwait(false);
        _refTableVerified = true;
    }

    /// <summary>The entry that places metadata of <paramref name="kind"/> at <paramref name="cluster"/>: field, file offset and a description.</summary>
    private (string Field, long At, string What) Referrer(Qcow2Metadata kind, long cluster)
    {
        if (kind == Qcow2Metadata.ActiveL2)
            for (int i = 0; i < _l1.Length; i++)
                if ((long)((Volatile.Read(ref _l1[i]) & Qcow2Entries.OffsetMask) >> _clusterBits) == cluster)
                    return ($"L1[{i}]", _l1Offset + 8L * i, $"L1 entry {i}");
        if (kind == Qcow2Metadata.RefcountBlock)
        {
            int i = _refcounts.IndexPointingAt(cluster, _clusterBits);
            if (i >= 0) return ($"refcount_table[{i}]", _refcounts.TableOffset + 8L * i, $"refcount table entry {i}");
        }
        return kind == Qcow2Metadata.RefcountTable
            ? ("refcount_table_offset", Qcow2Header.RefcountTableOffsetOffset, "the header's refcount_table_offset")
            : ("l1_table_offset", Qcow2Header.L1TableOffsetOffset, "the header's l1_table_offset");
    }

    /// <summary>
    /// Builds the error for a write that would land on metadata of <paramref name="kind"/> at <paramref name="cluster"/>
    /// and marks the image corrupt (the first such error is kept; later writes and flushes are refused with it).
    /// </summary>
    public ValueTask<ImageFormatException> CorruptAsync(string subject, Qcow2Metadata kind, long cluster, string field, long fileOffset, string detail = "") =>
        _failure.CorruptAsync(new ImageFormatException(
            $"{subject} overlaps the {Qcow2MetadataMap.Describe(kind)} at file offset 0x{cluster << _clusterBits:x}{detail}: preventing invalid write on metadata; '{_name}' is now marked corrupt {RepairAdvice.SeeCheck}",
            field, fileOffset));
}
