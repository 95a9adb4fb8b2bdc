namespace Qed.Operations.Migration;

/// <summary>
/// Progress of a migration run: bytes and images overall, and the image worked on last. The qed tool's display; the
/// public API reports <see cref="ImageProgress"/> (bytes, with <see cref="ImageProgress.CurrentImage"/>).
/// </summary>
/// <param name="BytesDone">Guest bytes dealt with (copied, skipped as zero, or found up to date).</param>
/// <param name="TotalBytes">Guest bytes of every image in the plan.</param>
/// <param name="ImagesDone">Images finished (whatever their outcome).</param>
/// <param name="TotalImages">Images in the plan.</param>
/// <param name="CurrentImage">The source being worked on most recently, or null.</param>
internal readonly record struct MigrationProgress(long BytesDone, long TotalBytes, int ImagesDone, int TotalImages, string? CurrentImage);
