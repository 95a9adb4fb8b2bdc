namespace Qed.Operations.Migration;

/// <summary>Progress of a migration run: bytes and images overall, and the image worked on last.</summary>
/// <param name="BytesDone">Guest bytes dealt with (copied, skipped as zero, or found up to date).</param>
/// <param name="TotalBytes">Guest bytes of every image in the plan.</param>
/// <param name="ImagesDone">Images finished (whatever their outcome).</param>
/// <param name="TotalImages">Images in the plan.</param>
/// <param name="CurrentImage">The source being worked on most recently, or null.</param>
public readonly record struct MigrationProgress(long BytesDone, long TotalBytes, int ImagesDone, int TotalImages, string? CurrentImage);
