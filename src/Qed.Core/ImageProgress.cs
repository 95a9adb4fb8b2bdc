namespace Qed;

/// <summary>
/// Progress of a long whole-image job (<see cref="ImageFile"/>'s convert, check, commit, defragment, stream and
/// migrate): how many bytes of the work are dealt with so far out of the total.
/// </summary>
/// <remarks>
/// A job reports once at its start (<see cref="BytesDone"/> 0) and then as it advances, typically after each chunk
/// (up to a few MiB) or table it handles, so a report can come many times a second; the last report of a job that
/// finishes has <see cref="BytesDone"/> equal to <see cref="TotalBytes"/> for convert, commit, defragment and stream.
/// Reports come on whichever thread did the work (a thread-pool thread, several of them at once for jobs that copy
/// chunks in parallel), not on the caller's context: an <see cref="IProgress{T}"/> that is not
/// <see cref="Progress{T}"/> (which posts to the context it was made on) must be thread-safe and quick. Values from
/// concurrent chunks may arrive slightly out of order; treat <see cref="BytesDone"/> as a high-water mark.
/// </remarks>
/// <param name="BytesDone">The work dealt with so far, in the job's unit: guest bytes (convert, commit, stream,
/// migrate), or bytes of the file's clusters (defragment, check).</param>
/// <param name="TotalBytes">The whole work, in the same unit.</param>
public readonly record struct ImageProgress(long BytesDone, long TotalBytes)
{
    /// <summary>The image being worked on (a source of a migration), or null when the job has only one.</summary>
    public string? CurrentImage { get; init; }
}
