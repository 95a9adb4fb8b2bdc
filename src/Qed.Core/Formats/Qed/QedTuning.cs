namespace Qed.Formats.Qed;

/// <summary>
/// Knobs fixed at open that only tests turn: how a QED image tunes maintenance and timers, and one deliberate fault.
/// Kept out of the image's own members so no production type carries a settable test hook; tests pass one to the
/// internal <c>QedImage.OpenAsync</c> overload that takes one
/// (they see it through InternalsVisibleTo). <see cref="Default"/> is what every other open uses.
/// </summary>
internal sealed record QedTuning
{
    /// <summary>What every production open uses.</summary>
    public static readonly QedTuning Default = new();

    /// <summary>
    /// Fault injection: skip the sync between a new cluster's data and the L2 entry that points at it, so the crash
    /// test can show that it catches metadata reaching the disk before data.
    /// </summary>
    public bool SkipDataFlush { get; init; }

    /// <summary>Bytes a defragment moves per pause: small enough that waiting requests make progress.</summary>
    public long DefragBatchBytes { get; init; } = 4L << 20;

    /// <summary>How long after the last flush NEED_CHECK is cleared, if no allocation came meanwhile.</summary>
    public TimeSpan NeedCheckClearDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Keep no recovery record: recovery after a crash checks every table (the path before the record).</summary>
    public bool NoRecoveryRecord { get; init; }

    /// <summary>
    /// Fault injection: record only the first table of each epoch, so the crash test can show that it catches a
    /// recovery record that misses a table.
    /// </summary>
    public bool RecordOmitsLaterTables { get; init; }
}
