namespace Qed.Storage;

/// <summary>
/// QEMU's quorum node: every write goes to all children; a read is answered by the contents that at least
/// <c>vote-threshold</c> children return alike (else it fails with EIO). The children are owned: disposed with this.
/// Capabilities combine the children's: a write is durable only if it is on every child, growing grows each.
/// </summary>
internal sealed class QuorumStorage : IBlockStorage
{
    private readonly IBlockStorage[] _children;
    private readonly int _threshold;

    /// <summary>Votes over <paramref name="children"/> (at least one), needing <paramref name="threshold"/> alike for a read.</summary>
    public QuorumStorage(IReadOnlyList<IBlockStorage> children, int threshold)
    {
        if (children.Count == 0) throw new ArgumentException("At least one child is needed for quorum", nameof(children));
        if (threshold < 1 || threshold > children.Count)
            throw new ArgumentException($"vote-threshold={threshold} must be between 1 and the number of children ({children.Count})", nameof(threshold));
        _children = [.. children];
        _threshold = threshold;
    }

    /// <inheritdoc/>
    public string Name => _children[0].Name;
    /// <inheritdoc/>
    public bool CanWrite => _children.All(c => c.CanWrite);
    /// <summary>The children's host sizes summed (null when one cannot tell), as qemu-img's disk size of a quorum.</summary>
    public long? AllocatedBytes
    {
        get
        {
            long sum = 0;
            foreach (var child in _children)
            {
                if (child.AllocatedBytes is not { } size) return null;
                sum += size;
            }
            return sum;
        }
    }

    /// <summary>Whether every child's completed writes are durable: a write completes only when all children's have.</summary>
    public bool WritesAreDurable => _children.All(c => c.WritesAreDurable);

    /// <inheritdoc/>
    public void SetInlineReadLimit(long bytes)
    {
        foreach (var child in _children) child.SetInlineReadLimit(bytes);
    }

    /// <inheritdoc/>
    public long Length => _children.Min(c => c.Length);

    /// <inheritdoc/>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var copies = new List<(byte[] Data, int Votes)>();
        foreach (var child in _children)
        {
            var data = new byte[buffer.Length];
            try
            {
                await child.ReadAsync(offset, data, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException)
            {
                continue; // a failed child casts no vote
            }
            int i = copies.FindIndex(c => c.Data.AsSpan().SequenceEqual(data));
            if (i < 0) copies.Add((data, 1));
            else copies[i] = (copies[i].Data, copies[i].Votes + 1);
        }
        var best = copies.OrderByDescending(c => c.Votes).FirstOrDefault();
        if (best.Data is null || best.Votes < _threshold)
            throw new IOException($"Input/output error (quorum: {best.Votes} of {_children.Length} children agree at offset {offset}, {_threshold} needed)", InjectedError.EIO);
        best.Data.CopyTo(buffer);
    }

    /// <inheritdoc/>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        foreach (var child in _children) await child.WriteAsync(offset, data, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        foreach (var child in _children) await child.ZeroRangeAsync(offset, length, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        foreach (var child in _children) await child.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default)
    {
        foreach (var child in _children) await child.SetLengthAsync(length, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    /// <remarks>Each child grows in turn under the same contract, so this too has completed when it returns.</remarks>
    public async ValueTask GrowAsync(long length, CancellationToken cancellationToken = default)
    {
        foreach (var child in _children) await child.GrowAsync(length, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default) =>
        _children[0].GetAllocationAsync(offset, maxLength, cancellationToken);

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var child in _children) await child.DisposeAsync().ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var child in _children) child.Dispose();
    }
}
