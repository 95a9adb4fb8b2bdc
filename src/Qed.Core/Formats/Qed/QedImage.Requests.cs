using System.Runtime.CompilerServices;

namespace Qed;

// The read path and the per-layer map.
public sealed partial class QedImage
{
    /// <inheritdoc />
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return ReadGatedAsync(offset, buffer, cancellationToken);
        ValueTask pending;
        try { pending = ReadCoreAsync(offset, buffer, cancellationToken); }
        catch { _gate.Leave(); throw; }
        // The file offset found by the lookup is used before the request leaves the gate: see QedImage.Defrag.cs.
        return _gate.LeaveWhenDone(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadGatedAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await _gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try { await ReadCoreAsync(offset, buffer, cancellationToken).ConfigureAwait(false); }
        finally { _gate.Leave(); }
    }

    /// <summary>The read, inside the gate.</summary>
    private ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRange(offset, buffer.Length);
        // Fast path: one run of one kind with its table in memory needs no state machine of ours.
        if (buffer.Length > 0 && TryLookupCached(offset, buffer.Length, out var extent) && extent.Length == buffer.Length)
        {
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    return _file.ReadAsync(extent.FileOffset, buffer, cancellationToken);
                case ExtentKind.Zero:
                    buffer.Span.Clear();
                    return ValueTask.CompletedTask;
                case ExtentKind.Unallocated when _backing is null:
                    buffer.Span.Clear();
                    return ValueTask.CompletedTask;
            }
        }
        return ReadSlowAsync(offset, buffer, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadSlowAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (buffer.Length > 0)
        {
            var extent = await LookupAsync(offset, buffer.Length, cancellationToken).ConfigureAwait(false);
            int n = (int)extent.Length;
            switch (extent.Kind)
            {
                case ExtentKind.Data:
                    await _file.ReadAsync(extent.FileOffset, buffer[..n], cancellationToken).ConfigureAwait(false);
                    break;
                case ExtentKind.Zero:
                    buffer.Span[..n].Clear();
                    break;
                default:
                    await ReadBackingAsync(offset, buffer[..n], cancellationToken).ConfigureAwait(false);
                    break;
            }
            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>Reads what lies beneath this image: the backing image, and zeroes past its end or without one.</summary>
    private async ValueTask ReadBackingAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        var backing = _backing; // read once: a stream may detach it meanwhile
        long below = backing is null ? 0 : Math.Max(0, Math.Min(buffer.Length, backing.Size - offset));
        if (below > 0) await backing!.ReadAsync(offset, buffer[..(int)below], ct).ConfigureAwait(false);
        buffer.Span[(int)below..].Clear();
    }

    /// <inheritdoc />
    public override ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        if (!_gate.TryEnter()) return Gated(offset, length, cancellationToken);
        ValueTask<LayerExtent> pending;
        try { pending = GetLayerExtentCoreAsync(offset, length, cancellationToken); }
        catch { _gate.Leave(); throw; }
        return _gate.LeaveWhenDone(pending);

        async ValueTask<LayerExtent> Gated(long offset, long length, CancellationToken ct)
        {
            await _gate.EnterAsync(ct).ConfigureAwait(false);
            try { return await GetLayerExtentCoreAsync(offset, length, ct).ConfigureAwait(false); }
            finally { _gate.Leave(); }
        }
    }

    private ValueTask<LayerExtent> GetLayerExtentCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (length == 0) return ValueTask.FromResult(new LayerExtent(offset, 0, ExtentKind.Unallocated, -1));
        return LookupAsync(offset, length, cancellationToken);
    }
}
