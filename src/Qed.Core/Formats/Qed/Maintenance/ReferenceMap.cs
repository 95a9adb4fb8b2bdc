namespace Qed.Formats.Qed.Maintenance;

/// <summary>
/// Something referenced: an L2 table (Owner = -(L1 index + 1)) or a data cluster (Owner = guest cluster). Key is
/// its place in the target layout: tables by L1 index, then data in guest order.
/// </summary>
internal struct ReferencedItem
{
    public long Owner;
    public long Key;
    public long Current; // cluster index
    public long Target;  // cluster index, or -1 when the pass leaves it where it is
    public int Clusters;
}

/// <summary>
/// Every referenced cluster of the image and who owns it, the items in layout order (tables in L1 order, then data
/// in guest order), and the unreferenced clusters inside the file. Built with the request gate paused and metadata
/// written back, so it describes memory and disk alike.
/// </summary>
/// <remarks>
/// Invariants: no cluster has two owners (building refuses such an image as corrupt, through the latch); the header
/// and L1 clusters are fixed and never owned or free; <see cref="Move"/> keeps owners and free clusters in step.
/// </remarks>
internal sealed class ReferenceMap
{
    public required L2Table?[] Tables;
    public required List<ReferencedItem> Items;
    public readonly Dictionary<long, long> Owners = new(); // cluster index -> owner
    public readonly Dictionary<long, int> Where = new();   // owner -> index in Items
    public readonly SortedSet<long> Free = new();          // unreferenced clusters inside the file, header and L1 aside
    public long HeaderClusters, L1First, L1End;

    /// <summary>Whether a cluster is part of the header or the L1 table, which never move.</summary>
    public bool IsFixed(long cluster) => cluster < HeaderClusters || (cluster >= L1First && cluster < L1End);

    /// <summary>Cluster index past the last referenced (or fixed) cluster: where the file may be cut.</summary>
    public long End
    {
        get
        {
            long end = Math.Max(HeaderClusters, L1End);
            foreach (long cluster in Owners.Keys) end = Math.Max(end, cluster + 1);
            return end;
        }
    }

    /// <summary>Records that <paramref name="item"/> now lives at cluster <paramref name="to"/>.</summary>
    public void Move(ReferencedItem item, long to)
    {
        for (long c = item.Current; c < item.Current + item.Clusters; c++) { Owners.Remove(c); Free.Add(c); }
        for (long c = to; c < to + item.Clusters; c++) { Owners[c] = item.Owner; Free.Remove(c); }
    }

    /// <summary>Whether the tables here are the objects the cache holds (or not cached at all).</summary>
    public bool IsCurrent(L2TableCache cache)
    {
        for (int i = 0; i < Tables.Length; i++)
        {
            var cached = cache.Peek(i);
            if (cached != null && cached != Tables[i]) return false;
        }
        return true;
    }

    /// <summary>
    /// Walks L1 and every L2 table (validating each entry) and lists what is referenced. Refuses an image with a
    /// cluster referenced twice. The gate is paused and metadata written back.
    /// </summary>
    public static async Task<ReferenceMap> BuildAsync(QedGeometry g, L1Table l1, L2TableCache cache, EntryValidator validator,
        ClusterAllocator allocator, FailureLatch latch)
    {
        var map = new ReferenceMap { Tables = new L2Table?[l1.Length], Items = new List<ReferencedItem>() };
        await cache.AwaitLoadsAsync().ConfigureAwait(false);
        map.HeaderClusters = g.HeaderClusters;
        map.L1First = g.ClusterOf(g.L1Offset);
        map.L1End = map.L1First + g.TableClusters;
        int tableClusters = g.TableClusters;

        void Claim(long cluster, long owner, string what, long at)
        {
            if (map.IsFixed(cluster) || !map.Owners.TryAdd(cluster, owner))
                throw latch.Corrupt($"QED {what} (file offset 0x{at:x}) refers to cluster 0x{g.OffsetOf(cluster):x}, which is already in use",
                    what, at);
        }

        for (int i = 0; i < l1.Length; i++)
        {
            if (l1[i] == 0) continue;
            var table = await cache.GetAsync(i, CancellationToken.None).ConfigureAwait(false); // validates the offset
            if (table is null) continue;
            map.Tables[i] = table;
            long at = g.ClusterOf((long)table.FileOffset);
            for (long c = at; c < at + tableClusters; c++) Claim(c, -(i + 1), $"L1[{i}]", g.L1EntryFileOffset(i));
            map.Items.Add(new ReferencedItem { Owner = -(i + 1), Key = i, Current = at, Target = -1, Clusters = tableClusters });
        }
        for (int i = 0; i < l1.Length; i++)
        {
            var table = map.Tables[i];
            if (table is null) continue;
            for (int j = 0; j < g.EntriesPerTable; j++)
            {
                ulong entry = table.Entry(j);
                if (validator.Classify(table, j, entry) != ExtentKind.Data) continue;
                long owner = ((long)i << g.EntryBits) + j;
                long cluster = g.ClusterOf((long)entry);
                Claim(cluster, owner, $"L2[{i}][{j}]", (long)table.FileOffset + 8L * j);
                map.Items.Add(new ReferencedItem { Owner = owner, Key = l1.Length + owner, Current = cluster, Target = -1, Clusters = 1 });
            }
        }
        for (int i = 0; i < map.Items.Count; i++) map.Where[map.Items[i].Owner] = i;
        long fileClusters = g.ClusterOf(allocator.FileEnd);
        for (long c = map.HeaderClusters; c < fileClusters; c++)
            if (!map.IsFixed(c) && !map.Owners.ContainsKey(c)) map.Free.Add(c);
        return map;
    }
}
