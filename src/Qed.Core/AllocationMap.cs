namespace Qed;

/// <summary>
/// The allocation map of a whole backing chain: for a range, which layer supplies each run and whether it is data,
/// zero or nothing. Feeds <c>map</c>, <c>convert</c> and NBD block status.
/// </summary>
public static class AllocationMap
{
    /// <summary>Describes the run at <paramref name="offset"/> (at most <paramref name="length"/> bytes) through the chain.</summary>
    public static async ValueTask<ChainExtent> GetExtentAsync(DiskImage image, long offset, long length, CancellationToken cancellationToken = default)
    {
        var layer = image;
        int depth = 0;
        while (true)
        {
            var extent = await layer.GetLayerExtentAsync(offset, length, cancellationToken).ConfigureAwait(false);
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    return new ChainExtent(offset, extent.Length, depth, true, false, true, extent.FileOffset, layer);
                case ExtentKind.Zero:
                    return new ChainExtent(offset, extent.Length, depth, true, true, false, extent.FileOffset, layer);
            }
            var below = layer.Backing;
            if (below is null || offset >= below.Size)
                return new ChainExtent(offset, extent.Length, depth, false, true, false, -1, null);
            length = Math.Min(extent.Length, below.Size - offset);
            layer = below;
            depth++;
        }
    }

    /// <summary>
    /// Enumerates the chain's runs over [offset, offset+length), merging neighbours with the same properties (and,
    /// for data, contiguous file offsets in the same layer), as qemu-img map does.
    /// </summary>
    public static async IAsyncEnumerable<ChainExtent> EnumerateAsync(DiskImage image, long offset, long length,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ChainExtent? pending = null;
        long end = offset + length;
        while (offset < end)
        {
            var next = await GetExtentAsync(image, offset, end - offset, cancellationToken).ConfigureAwait(false);
            if (pending is { } p && CanMerge(p, next))
            {
                pending = p with { Length = p.Length + next.Length };
            }
            else
            {
                if (pending is { } done) yield return done;
                pending = next;
            }
            offset += next.Length;
        }
        if (pending is { } last) yield return last;
    }

    private static bool CanMerge(ChainExtent a, ChainExtent b) =>
        a.Depth == b.Depth && a.Present == b.Present && a.Zero == b.Zero && a.Data == b.Data && a.Layer == b.Layer &&
        (a.FileOffset < 0 ? b.FileOffset < 0 : b.FileOffset == a.FileOffset + a.Length);
}
