using System.Runtime.CompilerServices;

namespace Qed.Formats.Qed;

// The requests: each runs inside the request gate and finishes its I/O at the file offsets it looked up before it
// leaves (so a paused defragment or shrink never frees a cluster a request still uses). The fast paths (one run of
// one kind, its table in memory) need no state machine of ours; the rest goes to the components.
public sealed partial class QedImage
{
    /// <inheritdoc />
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return ReadGatedAsync(offset, buffer, cancellationToken);
        ValueTask pending;
        try { pending = ReadCoreAsync(offset, buffer, cancellationToken); }
        catch { _gate.Leave(); throw; }
        return _gate.LeaveWhenDone(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadGatedAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await ReadCoreAsync(offset, buffer, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>The read, inside the gate.</summary>
    private ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRange(offset, buffer.Length);
        if (buffer.Length > 0 && _cache.TryLookupCached(offset, buffer.Length, out var extent) && extent.Length == buffer.Length)
        {
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    return _file.ReadAsync(extent.FileOffset, buffer, cancellationToken);
                case ExtentKind.Zero:
                    buffer.Span.Clear();
                    return ValueTask.CompletedTask;
                case ExtentKind.Unallocated when _backing.Current is null:
                    buffer.Span.Clear();
                    return ValueTask.CompletedTask;
            }
        }
        return ReadSlowAsync(offset, buffer, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadSlowAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (buffer.Length > 0)
        {
            var extent = await _cache.LookupAsync(offset, buffer.Length, cancellationToken).ConfigureAwait(false);
            int n = (int)extent.Length;
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    await _file.ReadAsync(extent.FileOffset, buffer[..n], cancellationToken).ConfigureAwait(false);
                    break;
                case ExtentKind.Zero:
                    buffer.Span[..n].Clear();
                    break;
                default:
                    await _backing.ReadAsync(offset, buffer[..n], cancellationToken).ConfigureAwait(false);
                    break;
            }
            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <inheritdoc />
    public override ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return Gated(offset, length, cancellationToken);
        ValueTask<LayerExtent> pending;
        try { pending = GetLayerExtentCoreAsync(offset, length, cancellationToken); }
        catch { _gate.Leave(); throw; }
        return _gate.LeaveWhenDone(pending);

        async ValueTask<LayerExtent> Gated(long offset, long length, CancellationToken ct)
        {
            await _gate.EnterAsync(ct).ConfigureAwait(false);
            try { return await GetLayerExtentCoreAsync(offset, length, ct).ConfigureAwait(false); }
            finally { _gate.Leave(); }
        }
    }

    private ValueTask<LayerExtent> GetLayerExtentCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (length == 0) return ValueTask.FromResult(new LayerExtent(offset, 0, ExtentKind.Unallocated, -1));
        return _cache.LookupAsync(offset, length, cancellationToken);
    }

    /// <inheritdoc />
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return WriteGatedAsync(offset, data, cancellationToken);
        ValueTask pending;
        try { pending = WriteCoreAsync(offset, data, cancellationToken); }
        catch { _gate.Leave(); throw; }
        return _gate.LeaveWhenDone(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteGatedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await WriteCoreAsync(offset, data, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>The write, inside the gate.</summary>
    private ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        _latch.ThrowIfFailed();
        // Fast path: a write that lands in place in one run of allocated clusters.
        if (data.Length > 0 && _cache.TryLookupCached(offset, data.Length, out var extent) && extent.Kind == ExtentKind.Data && extent.Length == data.Length)
            return _file.WriteAsync(extent.FileOffset, data, cancellationToken);
        return _writer.WriteAsync(offset, data, cancellationToken);
    }

    /// <inheritdoc />
    public override async ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            _latch.ThrowIfFailed();
            await _writer.WriteZeroesAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Whole data clusters keep their L2 entries and have their host range punched out: the space goes back to the host
    /// and the clusters read as zeroes (with or without a backing file, as qcow2 v3 discards), and the image stays
    /// check-clean, since nothing is unmapped. Nothing is freed, so nothing is ever reused: a cluster's file offset
    /// belongs to its guest cluster for as long as the mapping lives (defragment and shrink move or drop mappings only
    /// with every request drained), and a punch can never land on another cluster's data. No metadata changes, so
    /// nothing is ordered against a flush; a crash leaves each sector with its old content or zeroes. Unallocated and
    /// zero clusters, and partial clusters, are left alone: discard is advisory.
    /// </remarks>
    public override async ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            _latch.ThrowIfFailed();
            await _writer.DiscardAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <inheritdoc />
    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_readOnly) return;
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await _writer.FlushAsync(cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>
    /// Defragments the open image while other requests go on: L2 tables right after the L1 table, then data clusters
    /// in guest order, so reading the image in guest order reads the file sequentially; the file is then truncated to
    /// its referenced clusters. Works in short batches during which requests wait. On an image nobody writes to
    /// meanwhile the result is exact: no gap, no leak. Concurrent writes are kept but may land outside the order: a
    /// cluster allocated behind the pass's position stays where it was put, and a cluster freed behind it stays a hole.
    /// </summary>
    /// <param name="progress">Receives the bytes of the clusters placed out of the bytes of the clusters referenced, after
    /// every batch, on the thread that ran it (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops between batches; the image is consistent and no data is lost.</param>
    /// <exception cref="ImageFormatException">The image is corrupt (check and repair it first); nothing is moved.</exception>
    public async Task DefragmentAsync(IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        _latch.ThrowIfFailed();
        long cs = ClusterSize;
        var clusters = progress is null ? null : new ClusterProgress(progress, cs);
        await _defragmenter.RunAsync(clusters, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Changes the guest size of the open image while it stays in use (requests wait for the few steps it takes).
    /// Growing makes the new range read as zeroes. Shrinking drops the mappings past the new end, zeroes the rest of
    /// the new last cluster, punches out the freed clusters and truncates the file after its last referenced cluster.
    /// A crash at any point leaves a consistent image of the old or the new size holding every byte below the smaller
    /// of the two (at worst with leaked clusters).
    /// </summary>
    /// <param name="newSize">The new guest size: a multiple of 512, at most what the table geometry addresses.</param>
    /// <param name="options"><see cref="ResizeOptions.AllowShrink"/> must be set when <paramref name="newSize"/> is below
    /// the current size (<see cref="ResizeOptions.Format"/> is not used: the image is open).</param>
    /// <param name="cancellationToken">Cancels while waiting for the requests in flight to drain.</param>
    /// <exception cref="ArgumentException">The size is invalid, or smaller without <see cref="ResizeOptions.AllowShrink"/>.</exception>
    public async Task ResizeAsync(long newSize, ResizeOptions? options = null, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        bool allowShrink = options?.AllowShrink ?? false;
        await _resizer.ResizeAsync(newSize, allowShrink, () => Size, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Unmaps every guest cluster and cuts the file after the header and the L1 table, so the image reads through to
    /// its backing file (commit, once the base durably holds what the image showed). Requests wait meanwhile. A crash
    /// at any point leaves each L2 table linked and intact or unlinked, and at worst leaked clusters.
    /// </summary>
    /// <exception cref="ImageNeedsCheckException">An earlier failure left the image needing a check.</exception>
    internal Task EmptyAsync(CancellationToken cancellationToken)
    {
        CheckWritable();
        return _emptier.EmptyAsync(cancellationToken);
    }

    /// <summary>
    /// Allocates the unallocated clusters under [offset, offset+data.Length) (one L2 table) with <paramref name="data"/>,
    /// only if they are still unallocated: a guest write that got there first is never overwritten with stale backing
    /// data. Returns false when the clusters changed (look again). A request like any other in the gate.
    /// </summary>
    internal async ValueTask<bool> CopyUpAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await _gate.EnterAsync(ct).ConfigureAwait(false);
        try
        {
            CheckWritable();
            CheckRange(offset, data.Length);
            _latch.ThrowIfFailed();
            return await _writer.AllocateAsync(offset, data, data.Length, ExtentKind.Unallocated, zeroClusters: false, ct).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <summary>
    /// Makes the whole, unallocated clusters under [offset, offset+length) (one L2 table) zero clusters, only if they
    /// are all still unallocated. Returns false when the clusters changed (look again).
    /// </summary>
    internal async ValueTask<bool> CopyUpZeroesAsync(long offset, long length, CancellationToken ct)
    {
        await _gate.EnterAsync(ct).ConfigureAwait(false);
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            _latch.ThrowIfFailed();
            if (((offset | length) & (_g.ClusterSize - 1)) != 0)
                throw new ArgumentException($"Zero clusters need whole clusters (offset {offset}, length {length})");
            return await _writer.AllocateAsync(offset, default, length, ExtentKind.Unallocated, zeroClusters: true, ct).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <summary>Refuses a backing change this program cannot write safely, before any data is copied.</summary>
    internal void ValidateBackingChange(string? name)
    {
        CheckWritable();
        _header.ValidateBackingChange(name, Name);
    }

    /// <summary>
    /// Drops the backing file once everything it supplied has been copied in: metadata is made durable first, then the
    /// header loses its backing fields (and the old name's bytes are zeroed), then reads stop consulting it.
    /// </summary>
    internal Task DetachBackingAsync(CancellationToken ct) => SwitchBackingAsync(null, null, null, ct);

    /// <summary>
    /// Makes <paramref name="backing"/> (a layer further down the current chain, or null for none) the backing file,
    /// recorded as <paramref name="name"/> (raw <paramref name="format"/> sets BACKING_FORMAT_NO_PROBE). The caller has
    /// already copied in everything the layers being skipped supplied, so the image reads the same before and after.
    /// Everything is flushed first; a crash leaves either the old or the new chain (see HeaderWriter).
    /// Reads that already hold the old chain finish on it (it reads the same); it is disposed at close.
    /// </summary>
    internal async Task SwitchBackingAsync(DiskImage? backing, string? name, string? format, CancellationToken ct)
    {
        _latch.ThrowIfFailed();
        ValidateBackingChange(name);
        await FlushAsync(ct).ConfigureAwait(false);
        await _header.SwitchBackingAsync(name, format, ct).ConfigureAwait(false);
        _backing.Switch(backing);
    }

    /// <summary>
    /// Test hook: describes an L1 or in-memory L2 entry that points into [offset, offset+length), or null. The stress
    /// test calls it whenever the storage is asked to punch or cut that range: nothing may still point there.
    /// </summary>
    internal string? TestFindReference(long offset, long length) => _cache.FindReference(offset, length);

    /// <summary>The defragmenter's (clusters placed, clusters referenced) as bytes, handed on as they come.</summary>
    private sealed class ClusterProgress(IProgress<ImageProgress> inner, long clusterSize) : IProgress<(long Done, long Total)>
    {
        public void Report((long Done, long Total) value) => inner.Report(new ImageProgress(value.Done * clusterSize, value.Total * clusterSize));
    }
}
