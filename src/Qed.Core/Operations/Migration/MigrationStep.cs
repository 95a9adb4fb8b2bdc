namespace Qed.Operations.Migration;

/// <summary>
/// One image of a <see cref="MigrationPlan"/>: a source file and the target it becomes. Steps come in the plan's
/// order, bottom-up: a step's <see cref="Backing"/> comes before it.
/// </summary>
public sealed record MigrationStep
{
    /// <summary>The source file, a full path.</summary>
    public required string Source { get; init; }

    /// <summary>The source's format: <see cref="ImageFormat.Qed"/> for an image found, or the format of a backing file brought along.</summary>
    public required ImageFormat SourceFormat { get; init; }

    /// <summary>
    /// The source's backing chain, top first, as full paths (the source itself first); for an image whose chain cannot
    /// be followed, as far as it could be.
    /// </summary>
    public required IReadOnlyList<string> SourceChain { get; init; }

    /// <summary>The target file, a full path inside the target folder.</summary>
    public required string Target { get; init; }

    /// <summary>The target's format.</summary>
    public required ImageFormat TargetFormat { get; init; }

    /// <summary>The guest size in bytes, from the source's header (0 when it cannot be read).</summary>
    public long VirtualSize { get; init; }

    /// <summary>
    /// The step whose target is this target's backing file, or null (a standalone target: no backing file in the
    /// source, or flattened).
    /// </summary>
    public MigrationStep? Backing { get; init; }

    /// <summary>The backing file name recorded in the target: <see cref="Backing"/>'s target relative to this target's folder.</summary>
    public string? TargetBackingName =>
        Backing is null ? null : Path.GetRelativePath(Path.GetDirectoryName(Target)!, Backing.Target);

    /// <summary>True for a backing file of another format (raw, qcow2) copied in so that the target tree stands alone.</summary>
    public bool BroughtAlong { get; init; }

    /// <summary>
    /// Why this source cannot be migrated, found while planning (its header is unreadable, its backing file is
    /// missing, its target collides with another's), or null. Such a step is reported and not run.
    /// </summary>
    public string? Problem { get; init; }

    /// <summary>Whether <see cref="Problem"/> is the source being corrupt (rather than something around it).</summary>
    public bool Corrupt { get; init; }
}
