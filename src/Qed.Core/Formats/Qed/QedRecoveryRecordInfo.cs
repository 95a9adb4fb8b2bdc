namespace Qed.Formats.Qed;

/// <summary>
/// What a QED image's recovery record (docs/recovery-record.md) said when the image was opened: present only while
/// NEED_CHECK and the record's auto-clear bit are both set, which is after a writer that keeps the record stopped
/// without a clean close.
/// </summary>
/// <param name="Trusted">Whether the record can be used: a read-write open then checks only the tables in play.</param>
/// <param name="TablesInPlay">L2 tables the record names (0 when not trusted).</param>
/// <param name="CleanFileEnd">The file's end when the image was last known clean (0 when not trusted).</param>
/// <param name="Problem">Why the record is not trusted, or null.</param>
public sealed record QedRecoveryRecordInfo(bool Trusted, int TablesInPlay, long CleanFileEnd, string? Problem);
