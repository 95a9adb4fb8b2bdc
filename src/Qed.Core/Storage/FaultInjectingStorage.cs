namespace Qed.Storage;

/// <summary>
/// QEMU's blkdebug node: passes every call to the storage under it, except that requests matching an
/// <see cref="InjectedError"/> rule (<see cref="InjectedError.Matches"/>) fail with an <see cref="IOException"/> carrying
/// the rule's errno text (a rule with <c>once</c> is spent by its first failure). Reads, writes, zeroing
/// (write-zeroes), flushes and allocation queries (block-status) are the request kinds; resizing is never failed.
/// Capabilities are those of the storage under it (a completed write is durable if it is there), except
/// <see cref="AllocatedBytes"/>, which qemu-img does not report through blkdebug.
/// </summary>
internal sealed class FaultInjectingStorage(IBlockStorage inner, IEnumerable<InjectedError> rules) : IBlockStorage
{
    private readonly List<InjectedError> _rules = [.. rules];
    private readonly Lock _lock = new();

    /// <inheritdoc/>
    public string Name => inner.Name;
    /// <inheritdoc/>
    public bool CanWrite => inner.CanWrite;
    /// <inheritdoc/>
    public long Length => inner.Length;

    /// <inheritdoc/>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Check(InjectedIoType.Read, offset, buffer.Length);
        return inner.ReadAsync(offset, buffer, cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        Check(InjectedIoType.Write, offset, data.Length);
        return inner.WriteAsync(offset, data, cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        Check(InjectedIoType.WriteZeroes, offset, length);
        return inner.ZeroRangeAsync(offset, length, cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Check(InjectedIoType.Flush, 0, 0);
        return inner.FlushAsync(cancellationToken);
    }
    /// <inheritdoc/>
    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default) => inner.SetLengthAsync(length, cancellationToken);
    /// <inheritdoc/>
    public ValueTask GrowAsync(long length, CancellationToken cancellationToken = default) => inner.GrowAsync(length, cancellationToken);
    /// <inheritdoc/>
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default)
    {
        // The query's whole range counts, not only the run it answers: a rule's sector anywhere in it fails the query.
        Check(InjectedIoType.BlockStatus, offset, maxLength);
        return inner.GetAllocationAsync(offset, maxLength, cancellationToken);
    }
    /// <inheritdoc/>
    public bool WritesAreDurable => inner.WritesAreDurable;
    /// <summary>Null, whatever is under it: qemu-img info prints "disk size: unavailable" for an image on a blkdebug node.</summary>
    public long? AllocatedBytes => null;
    /// <inheritdoc/>
    public void SetInlineReadLimit(long bytes) => inner.SetInlineReadLimit(bytes);
    /// <inheritdoc/>
    public ValueTask DisposeAsync() => inner.DisposeAsync();
    /// <inheritdoc/>
    public void Dispose() => inner.Dispose();

    /// <summary>Throws the first matching rule's error (and spends it when it is a <c>once</c> rule).</summary>
    private void Check(InjectedIoType type, long offset, long length)
    {
        InjectedError? hit = null;
        lock (_lock)
        {
            foreach (var rule in _rules)
            {
                if (!rule.Matches(type, offset, length)) continue;
                hit = rule;
                break;
            }
            if (hit is { Once: true }) _rules.Remove(hit);
        }
        if (hit != null) throw new IOException(hit.Message, hit.Errno);
    }
}
