namespace Qed.Storage;

/// <summary>
/// Positional, thread-safe byte storage under an image: a file, memory, or a fault-injecting test double.
/// Every call carries its offset; there is no shared position, so any number of callers may use it at once.
/// </summary>
public interface IBlockStorage : IAsyncDisposable, IDisposable
{
    /// <summary>A name for messages (the file path, or a description).</summary>
    string Name { get; }

    /// <summary>Whether writes are allowed.</summary>
    bool CanWrite { get; }

    /// <summary>The current length in bytes.</summary>
    long Length { get; }

    /// <summary>
    /// Reads exactly <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>; bytes past the end read as zeroes.
    /// </summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="offset"/>, extending the storage if needed.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    /// <summary>Makes every completed write durable (fdatasync for files).</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Truncates or extends the storage; new bytes read as zeroes.</summary>
    ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Extends the storage to <paramref name="length"/> (never shrinks it), reserving the space where the platform
    /// can, so later writes there fill space already set aside instead of holes; new bytes read as zeroes. Storage
    /// that cannot reserve just sets the length.
    /// </summary>
    ValueTask GrowAsync(long length, CancellationToken cancellationToken = default) =>
        length > Length ? SetLengthAsync(length, cancellationToken) : ValueTask.CompletedTask;

    /// <summary>
    /// Makes a range read as zeroes, freeing its space where the platform can (hole punching); the length is unchanged.
    /// </summary>
    ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Says whether the bytes at <paramref name="offset"/> are stored data or a hole (which reads as zeroes), and how
    /// far that state runs, at most <paramref name="maxLength"/> bytes. Storage that cannot tell reports data.
    /// </summary>
    ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default);
}
