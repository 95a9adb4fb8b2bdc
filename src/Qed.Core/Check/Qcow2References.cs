namespace Qed.Check;

/// <summary>
/// How many times the metadata references each host cluster, as the qcow2 check rebuilds it: one count per cluster
/// that something names, kept in a dictionary so memory follows the references (each one an entry in a table of the
/// file), never the file's length or the virtual size.
/// </summary>
/// <remarks>Invariant: no count exceeds <see cref="Max"/>, the largest refcount the image's width holds; a reference
/// that would pass it is refused (the caller reports it as a corruption, as qemu-img does).</remarks>
internal sealed class Qcow2References(int refcountBits)
{
    private readonly Dictionary<long, ulong> _counts = new();

    /// <summary>The largest refcount the width holds.</summary>
    public ulong Max { get; } = refcountBits >= 64 ? ulong.MaxValue : (1UL << refcountBits) - 1;

    /// <summary>The references counted to <paramref name="cluster"/> (0 when none).</summary>
    public ulong this[long cluster] => _counts.GetValueOrDefault(cluster);

    /// <summary>The highest cluster referenced, or -1.</summary>
    public long Highest { get; private set; } = -1;

    /// <summary>The clusters referenced at least once, in no particular order.</summary>
    public IEnumerable<KeyValuePair<long, ulong>> All => _counts;

    /// <summary>Adds one reference to <paramref name="cluster"/>; false (nothing changed) when it would overflow.</summary>
    public bool Add(long cluster) => Add(cluster, 1) == 0;

    /// <summary>Adds <paramref name="times"/> references to <paramref name="cluster"/>, as many as fit; returns how
    /// many did not (each an overflow, as if added one by one).</summary>
    public ulong Add(long cluster, ulong times)
    {
        ulong now = _counts.GetValueOrDefault(cluster);
        ulong room = Max - now, added = Math.Min(room, times);
        if (added > 0)
        {
            _counts[cluster] = now + added;
            if (cluster > Highest) Highest = cluster;
        }
        return times - added;
    }

    /// <summary>Removes one reference from <paramref name="cluster"/> (a structure that a rebuild replaces).</summary>
    public void Remove(long cluster)
    {
        ulong now = _counts.GetValueOrDefault(cluster);
        if (now <= 1) _counts.Remove(cluster);
        else _counts[cluster] = now - 1;
    }
}
