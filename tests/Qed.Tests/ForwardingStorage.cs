using Qed.Storage;

namespace Qed.Tests;

/// <summary>
/// Storage that passes every call to the storage under it: a test overrides only the calls it watches or changes.
/// Capabilities are those of the storage under it. A durable write is this storage's write then its flush (the
/// interface's default), so a test that watches writes or flushes sees those too.
/// </summary>
internal abstract class ForwardingStorage(IBlockStorage inner) : IBlockStorage
{
    /// <summary>The storage every call goes to.</summary>
    protected IBlockStorage Inner => inner;

    public virtual string Name => inner.Name;
    public virtual bool CanWrite => inner.CanWrite;
    public virtual long Length => inner.Length;
    public virtual ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) => inner.ReadAsync(offset, buffer, ct);
    public virtual ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default) => inner.WriteAsync(offset, data, ct);
    public virtual ValueTask FlushAsync(CancellationToken ct = default) => inner.FlushAsync(ct);
    public virtual ValueTask SetLengthAsync(long length, CancellationToken ct = default) => inner.SetLengthAsync(length, ct);
    public virtual ValueTask GrowAsync(long length, CancellationToken ct = default) => inner.GrowAsync(length, ct);
    public virtual ValueTask ZeroRangeAsync(long offset, long length, CancellationToken ct = default) => inner.ZeroRangeAsync(offset, length, ct);
    public virtual ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken ct = default) =>
        inner.GetAllocationAsync(offset, maxLength, ct);
    public virtual bool WritesAreDurable => inner.WritesAreDurable;
    public virtual long? AllocatedBytes => inner.AllocatedBytes;
    public virtual void SetInlineReadLimit(long bytes) => inner.SetInlineReadLimit(bytes);
    public virtual ValueTask DisposeAsync() => inner.DisposeAsync();
    public virtual void Dispose() => inner.Dispose();
}
