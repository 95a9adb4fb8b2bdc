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

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> and returns once those bytes are durable, without
    /// promising anything about other writes not yet flushed. Files do it with a synced write of that range alone
    /// (RWF_DSYNC), so it does not wait for the rest of the file's dirty data; the default writes and flushes.
    /// </summary>
    ValueTask WriteDurableAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        BlockStorage.WriteThenFlushAsync(this, offset, data, cancellationToken);

    /// <summary>Truncates or extends the storage; new bytes read as zeroes.</summary>
    ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Extends the storage to <paramref name="length"/> (never shrinks it), reserving the space where the platform
    /// can, so later writes there fill space already set aside instead of holes; new bytes read as zeroes. Storage
    /// that cannot reserve just sets the length.
    /// </summary>
    /// <remarks>
    /// The growth contract, which callers rely on: the call does its work before it returns (it throws, or returns a
    /// task already completed or faulted), so a caller may wait on it synchronously while holding a lock (the QED
    /// allocator grows the file under its allocation lock). It may block on the host (an fallocate waits for a
    /// buffered write in progress) but never waits for another call on this storage to complete, so it cannot
    /// deadlock against requests the lock holder is waiting for. It is safe alongside reads and writes of other
    /// ranges; bytes already stored are unchanged; on failure the length may be unchanged or partly grown, never
    /// shorter. A wrapper grows what it wraps, under the same contract.
    /// </remarks>
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

    // Capabilities. Each default is safe to assume of any storage, so a test double need not declare any. A wrapper
    // must declare what holds for the storage it wraps, usually by forwarding: one that inherits a default hides
    // what is under it (FaultInjectingStorage over a write-through file is still durable). Callers ask these instead
    // of testing for a concrete storage type.

    /// <summary>
    /// Whether a write is durable once it completes, without a <see cref="FlushAsync"/> (files opened write-through
    /// or direct-sync, O_DSYNC). An image over such storage cannot leave metadata for a later flush: its caller was
    /// promised the write survives a crash when it completes. False (the default) promises nothing before a flush.
    /// </summary>
    bool WritesAreDurable => false;

    /// <summary>
    /// The bytes the storage occupies on the host, as qemu-img's "disk size" (actual-size), or null where it cannot
    /// tell (the default; qemu-img prints "unavailable").
    /// </summary>
    long? AllocatedBytes => null;

    /// <summary>
    /// A tuning hint: reads up to <paramref name="bytes"/> may be answered on the calling thread when the host already
    /// holds the data in memory, instead of going to the thread pool (see <see cref="ImageOpenOptions.InlineReadLimit"/>).
    /// Storage without such a path ignores it (the default); a wrapper passes it to what it wraps.
    /// </summary>
    void SetInlineReadLimit(long bytes)
    {
    }
}

/// <summary>Shared defaults of <see cref="IBlockStorage"/>.</summary>
internal static class BlockStorage
{
    /// <summary>A durable write for storage without a ranged one: the write, then a flush of everything.</summary>
    public static async ValueTask WriteThenFlushAsync(IBlockStorage storage, long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await storage.WriteAsync(offset, data, ct).ConfigureAwait(false);
        await storage.FlushAsync(ct).ConfigureAwait(false);
    }
}
