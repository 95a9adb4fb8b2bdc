namespace Qed.Formats.Shared;

/// <summary>
/// What a format tells its <see cref="TableResidency"/>: whether a table may go now, beyond the residency's own rules,
/// and what to forget when one goes. Called under the residency's lock, while it evicts.
/// </summary>
internal interface ITableEvictor
{
    /// <summary>Whether <paramref name="table"/> holds nothing the disk lacks and may be dropped now (it is not pinned).</summary>
    bool MayEvict(CachedTable table);

    /// <summary>The residency dropped <paramref name="table"/>: the format forgets it (lookups load it again).</summary>
    void Evicted(CachedTable table);
}
