namespace Qed.Formats.Shared;

/// <summary>
/// A table an L2 cache holds (QED's and qcow2's L2 tables derive from it): the bookkeeping of
/// <see cref="TableResidency"/>, which alone changes it, under the lock the cache gives it (except
/// <see cref="Touched"/>, set lock-free by lookups).
/// </summary>
internal abstract class CachedTable
{
    /// <summary>Allocations in flight into this table; a pinned table is never evicted. Under the residency's lock.</summary>
    internal int Pins;

    /// <summary>Used since it was last put at the newest end of the order: a hint, set without a lock (racy by design).</summary>
    internal bool Touched;

    /// <summary>Whether the residency holds the table now. Under the residency's lock.</summary>
    internal bool Resident;

    /// <summary>Neighbours in the residency's use order. Under the residency's lock.</summary>
    internal CachedTable? Newer, Older;
}
