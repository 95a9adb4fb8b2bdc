namespace Qed.Formats.Qcow2;

/// <summary>
/// Host cluster allocation for a writable qcow2 image: clusters come from the end of the file (the cursor), with their
/// refcounts set in memory, refcount blocks and a bigger refcount table made on the way; space let go of is freed only
/// once no durable mapping can point at it.
/// </summary>
/// <remarks>
/// Invariants:
/// <list type="bullet">
/// <item>The cursor only grows, and no cluster below it is given out twice this session: a request still holding an
/// old mapping can never touch a cluster that now belongs to someone else.</item>
/// <item>On disk at every instant a cluster's refcount is at least the number of durable references to it: frees wait
/// in <see cref="QueueFree"/> until the write-back has made the entries that dropped them durable, so a crash can leak
/// clusters but never leave one referenced and free.</item>
/// <item>Every cluster taken is checked against the metadata map before use; every refcount block loaded is validated
/// and checked before it can be changed.</item>
/// </list>
/// Not thread-safe: every member but <see cref="ValidEnd"/> runs under the image's allocation lock (the caller's).
/// </remarks>
internal sealed class Qcow2ClusterAllocator
{
    private readonly Qcow2Refcounts _refcounts;
    private readonly Qcow2OverlapGuard _guard;
    private readonly string _name;
    private readonly int _clusterSize;
    private readonly int _clusterBits;
    private readonly long _openedEnd;
    /// <summary>Where the next cluster is taken from; only grows. Written under the allocation lock, read with Volatile.</summary>
    private long _nextFree;
    /// <summary>Host byte ranges whose references are gone from memory but maybe not from disk.</summary>
    private readonly List<(long Offset, long Length)> _pendingFrees = new();

    /// <summary>An allocator taking clusters from <paramref name="openedEnd"/> (the file length as opened, rounded up to a cluster).</summary>
    public Qcow2ClusterAllocator(Qcow2Refcounts refcounts, Qcow2OverlapGuard guard, int clusterBits, long openedEnd, string name)
    {
        _refcounts = refcounts;
        _guard = guard;
        _clusterBits = clusterBits;
        _clusterSize = 1 << clusterBits;
        _openedEnd = openedEnd;
        _nextFree = openedEnd;
        _name = name;
    }

    /// <summary>How far a structure may point: the file as opened plus everything allocated since. Lock-free.</summary>
    public long ValidEnd => Math.Max(_openedEnd, Volatile.Read(ref _nextFree));

    /// <summary>Whether frees are waiting for the next write-back.</summary>
    public bool HasPendingFrees => _pendingFrees.Count > 0;

    /// <summary>The loaded refcount block <paramref name="index"/>, loading (validated and overlap-checked) if needed; null when it has none.</summary>
    public async ValueTask<Qcow2RefcountBlock?> GetBlockAsync(long index, CancellationToken ct)
    {
        if (_refcounts.TryGetLoaded(index, out var block)) return block;
        long offset = _refcounts.BlockOffset(index, ValidEnd);
        if (offset < 0) return null;
        await _guard.CheckRefBlockAsync(index, offset).ConfigureAwait(false); // every loaded block may be written back
        return await _refcounts.LoadBlockAsync(index, offset, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes <paramref name="count"/> contiguous clusters at the end of the file and sets their refcounts to 1 in
    /// memory; returns the first one's file offset. Clusters that already carry a refcount (leaked past the end) are
    /// taken over. The caller checks the clusters against the metadata map for its purpose.
    /// </summary>
    public async ValueTask<long> AllocateAsync(int count, CancellationToken ct)
    {
        while (true)
        {
            long start = _nextFree;
            long first = start / _clusterSize, last = first + count - 1;
            for (long b = _refcounts.BlockIndexOf(first); b <= _refcounts.BlockIndexOf(last); b++)
            {
                await EnsureBlockAsync(b, ct).ConfigureAwait(false);
                if (_nextFree != start) break;
            }
            if (_nextFree != start) continue; // a new refcount block took the start: try again after it
            // A refcount already set here is a leak from an earlier session (this one never gave these clusters out,
            // and nothing may point past the end of the file): taking the cluster over sets it to 1. Skipping such
            // clusters instead would let a corrupt block full of counts push the file end arbitrarily far.
            for (long c = first; c <= last; c++)
                _refcounts.Set(c, 1);
            Volatile.Write(ref _nextFree, start + (long)count * _clusterSize);
            return start;
        }
    }

    /// <summary>Makes sure refcount block <paramref name="index"/> exists, making and linking it if not.</summary>
    private async ValueTask<Qcow2RefcountBlock> EnsureBlockAsync(long index, CancellationToken ct)
    {
        var block = await GetBlockAsync(index, ct).ConfigureAwait(false);
        if (block != null) return block;
        if (index >= _refcounts.TableLength)
        {
            await GrowTableAsync(index, ct).ConfigureAwait(false);
            return await EnsureBlockAsync(index, ct).ConfigureAwait(false); // growing may have created it
        }
        long cluster = _nextFree / _clusterSize;
        long at;
        if (_refcounts.BlockIndexOf(cluster) == index)
        {
            // The block covers its own cluster (the usual case): it counts itself. A missing block means every
            // cluster it covers has refcount 0, so the cluster is free.
            at = _nextFree;
            await _guard.CheckNewClustersAsync($"for refcount block {index}", at, _clusterSize).ConfigureAwait(false);
            Volatile.Write(ref _nextFree, _nextFree + _clusterSize);
            block = _refcounts.AddNewBlock(index, at);
            _refcounts.Set(block, cluster, 1);
        }
        else
        {
            at = await AllocateAsync(1, ct).ConfigureAwait(false);
            await _guard.CheckNewClustersAsync($"for refcount block {index}", at, _clusterSize).ConfigureAwait(false);
            if (_refcounts.TryGetLoaded(index, out var made))
            {
                // Allocating created this very block on the way: give the cluster back (nothing ever referenced it).
                _refcounts.Set(at / _clusterSize, 0);
                return made;
            }
            block = _refcounts.AddNewBlock(index, at);
        }
        _guard.Add(at >> _clusterBits, Qcow2Metadata.RefcountBlock);
        await _guard.CheckRefTableAsync().ConfigureAwait(false);
        _refcounts.Link(index, at);
        return block;
    }

    /// <summary>Moves the refcount table to a bigger one at the end of the file (written back, then linked by the header, at flush).</summary>
    private async ValueTask GrowTableAsync(long neededIndex, CancellationToken ct)
    {
        long oldOffset = _refcounts.TableOffset, oldClusters = _refcounts.TableClusters;
        int clusters = _refcounts.Enlarge(neededIndex, _name); // before allocating: a block the allocation makes goes into the new table
        long at = await AllocateAsync(clusters, ct).ConfigureAwait(false);
        await _guard.CheckNewClustersAsync("for the refcount table", at, (long)clusters * _clusterSize).ConfigureAwait(false);
        for (long c = 0; c < clusters; c++) _guard.Add((at >> _clusterBits) + c, Qcow2Metadata.RefcountTable);
        _refcounts.MoveTable(at, clusters);
        _pendingFrees.Add((oldOffset, oldClusters * _clusterSize));
    }

    /// <summary>Queues the host space an L2 entry held, to be freed once the entry's replacement is durable.</summary>
    public void QueueFreeOf(ulong entry)
    {
        var (offset, length) = Qcow2Entries.HeldRange(entry, _clusterBits);
        if (length > 0) _pendingFrees.Add((offset, length));
    }

    /// <summary>Queues host bytes [<paramref name="offset"/>, +<paramref name="length"/>) to be freed after the next write-back.</summary>
    public void QueueFree(long offset, long length) => _pendingFrees.Add((offset, length));

    /// <summary>Loads (and so validates and checks) every block the pending frees will change, before a write-back writes anything.</summary>
    public async ValueTask LoadBlocksForPendingFreesAsync()
    {
        foreach (var (offset, length) in _pendingFrees)
            for (long b = _refcounts.BlockIndexOf(offset / _clusterSize); b <= _refcounts.BlockIndexOf((offset + length - 1) / _clusterSize); b++)
                await GetBlockAsync(b, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Decrements the refcount of every cluster each pending range touches (after the L2 and L1 write-back).</summary>
    /// <exception cref="ImageFormatException">A refcount to decrement is already 0.</exception>
    public async ValueTask ApplyPendingFreesAsync(CancellationToken ct)
    {
        foreach (var (offset, length) in _pendingFrees)
        {
            for (long c = offset / _clusterSize; c <= (offset + length - 1) / _clusterSize; c++)
            {
                var block = await GetBlockAsync(_refcounts.BlockIndexOf(c), ct).ConfigureAwait(false);
                ulong count = block == null ? 0 : _refcounts.Get(block, c);
                if (count == 0)
                    throw new ImageFormatException($"qcow2 refcount of the cluster at file offset 0x{c * _clusterSize:x} is already 0 while a reference to it is freed",
                        "refcount", c * _clusterSize);
                _refcounts.Set(block!, c, count - 1);
            }
        }
        _pendingFrees.Clear();
    }
}
