using Qed.Storage;

namespace Qed.Check;

/// <summary>
/// A read-only view of an open image's file for its consistency check: reads go to the file, and the length is the
/// one the image will leave at close, so the space it grew ahead for new clusters (reserved, unreferenced) does not
/// count as leaked clusters. Writes are refused: the check of an open image never repairs.
/// </summary>
internal sealed class OpenImageFileView(IBlockStorage file, long length) : IBlockStorage
{
    public string Name => file.Name;

    public bool CanWrite => false;

    public long Length => length;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        file.ReadAsync(offset, buffer, cancellationToken);

    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default) =>
        file.GetAllocationAsync(offset, maxLength, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default) => throw ReadOnly();

    /// <summary>The view does not own the file: the image does.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    public void Dispose() { }

    private InvalidOperationException ReadOnly() => new($"'{file.Name}' is checked while open: the check does not write it");
}
