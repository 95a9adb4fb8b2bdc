namespace Qed.Formats.Qcow2;

/// <summary>The kinds of qcow2 metadata a write is checked against (the areas QEMU's overlap checks guard).</summary>
[Flags]
internal enum Qcow2Metadata
{
    None = 0,
    /// <summary>Cluster 0: the header, its extensions and the backing file name.</summary>
    Header = 1 << 0,
    ActiveL1 = 1 << 1,
    ActiveL2 = 1 << 2,
    RefcountTable = 1 << 3,
    RefcountBlock = 1 << 4,
}

/// <summary>
/// Which host clusters hold metadata, and of what kind: every write of data or of a table is checked against it, so
/// that a corrupt entry pointing data (or one table) at another table fails the write instead of overwriting that
/// table. Built at open from the header, the L1 table and the refcount table; tables made later are added.
/// </summary>
/// <remarks>
/// Lookups take no lock and are a binary search; additions are serialised by the caller. The entries are one sorted
/// array of keys (cluster index shifted left, kind bit index in the low bits), published with its count as one
/// immutable pair: an addition after the last key writes past every published count and then publishes the longer
/// prefix; any other addition copies the array. New tables come from the end of the file, in increasing order, so
/// additions are appends in practice.
/// </remarks>
internal sealed class Qcow2MetadataMap
{
    private const int KindBits = 3;

    private sealed class Published(long[] keys, int count)
    {
        public readonly long[] Keys = keys;
        public readonly int Count = count;
    }

    private Published _published;

    private Qcow2MetadataMap(long[] keys, int count) => _published = new Published(keys, count);

    /// <summary>What the map is built from at open.</summary>
    internal sealed class Builder
    {
        private readonly List<long> _keys = new();

        /// <summary>Records <paramref name="clusters"/> clusters from <paramref name="firstCluster"/> as <paramref name="kind"/> (one kind).</summary>
        public void Add(long firstCluster, long clusters, Qcow2Metadata kind)
        {
            for (long c = 0; c < clusters; c++) _keys.Add(Key(firstCluster + c, kind));
        }

        public Qcow2MetadataMap Build()
        {
            _keys.Sort();
            var keys = new long[Math.Max(16, _keys.Count)];
            int count = 0;
            foreach (long key in _keys)
                if (count == 0 || keys[count - 1] != key) keys[count++] = key;
            return new Qcow2MetadataMap(keys, count);
        }
    }

    private static long Key(long cluster, Qcow2Metadata kind) => cluster << KindBits | (long)System.Numerics.BitOperations.Log2((uint)kind);

    /// <summary>Records one cluster as <paramref name="kind"/>. Callers serialise additions.</summary>
    public void Add(long cluster, Qcow2Metadata kind)
    {
        long key = Key(cluster, kind);
        var p = _published;
        if (p.Count > 0 && p.Keys[p.Count - 1] >= key)
        {
            int at = Array.BinarySearch(p.Keys, 0, p.Count, key);
            if (at >= 0) return;
            at = ~at;
            var copy = new long[Math.Max(p.Keys.Length, p.Count + 1)];
            Array.Copy(p.Keys, copy, at);
            copy[at] = key;
            Array.Copy(p.Keys, at, copy, at + 1, p.Count - at);
            Volatile.Write(ref _published, new Published(copy, p.Count + 1));
            return;
        }
        var keys = p.Keys;
        if (p.Count == keys.Length)
        {
            keys = new long[keys.Length * 2];
            Array.Copy(p.Keys, keys, p.Count);
        }
        keys[p.Count] = key;
        Volatile.Write(ref _published, new Published(keys, p.Count + 1));
    }

    /// <summary>
    /// Finds metadata of a kind outside <paramref name="allowed"/> in the clusters that file bytes
    /// [<paramref name="offset"/>, +<paramref name="length"/>) touch; returns false when there is none.
    /// </summary>
    public bool Overlaps(long offset, long length, int clusterBits, Qcow2Metadata allowed, out Qcow2Metadata kind, out long cluster)
    {
        kind = Qcow2Metadata.None;
        cluster = -1;
        if (length <= 0) return false;
        var p = Volatile.Read(ref _published);
        long first = offset >> clusterBits, last = (offset + length - 1) >> clusterBits;
        int at = Array.BinarySearch(p.Keys, 0, p.Count, first << KindBits);
        if (at < 0) at = ~at;
        for (; at < p.Count && p.Keys[at] >> KindBits <= last; at++)
        {
            var k = (Qcow2Metadata)(1 << (int)(p.Keys[at] & ((1 << KindBits) - 1)));
            if ((k & allowed) != 0) continue;
            kind = k;
            cluster = p.Keys[at] >> KindBits;
            return true;
        }
        return false;
    }

    /// <summary>The name QEMU's messages give a kind.</summary>
    public static string Describe(Qcow2Metadata kind) => kind switch
    {
        Qcow2Metadata.Header => "qcow2 header",
        Qcow2Metadata.ActiveL1 => "active L1 table",
        Qcow2Metadata.ActiveL2 => "active L2 table",
        Qcow2Metadata.RefcountTable => "refcount table",
        Qcow2Metadata.RefcountBlock => "refcount block",
        _ => kind.ToString(),
    };
}
