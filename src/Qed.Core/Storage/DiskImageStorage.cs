namespace Qed.Storage;

/// <summary>
/// A disk image's guest contents used as the file of another image (QEMU's nested formats, e.g. a QED image stored
/// inside another QED image). Its length is the image's virtual size, which cannot change: growing past it fails as
/// writing past a fixed-size device does. Owns the image: disposing this disposes it. Its host size is the image's (as
/// qemu-img shows for a nested format); a completed write is not promised durable (the image may hold metadata for a
/// flush), and the inline-read limit was given to the image's own files when it was opened.
/// </summary>
internal sealed class DiskImageStorage(DiskImage image) : IBlockStorage
{
    /// <inheritdoc/>
    public string Name => image.Name;
    /// <inheritdoc/>
    public bool CanWrite => !image.IsReadOnly;
    /// <inheritdoc/>
    public long Length => image.Size;

    /// <inheritdoc/>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        image.ReadAsync(offset, buffer, cancellationToken);
    /// <inheritdoc/>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        image.WriteAsync(offset, data, cancellationToken);
    /// <inheritdoc/>
    public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        image.WriteZeroesAsync(offset, length, cancellationToken);
    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => image.FlushAsync(cancellationToken);

    /// <inheritdoc/>
    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default) =>
        length <= image.Size ? ValueTask.CompletedTask
            : throw new IOException($"'{image.Name}' cannot grow past its virtual size of {image.Size} bytes (to {length})");

    /// <inheritdoc/>
    public async ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default)
    {
        var extent = await image.GetLayerExtentAsync(offset, maxLength, cancellationToken).ConfigureAwait(false);
        return (extent.Kind == ExtentKind.Data, Math.Max(1, extent.Length));
    }

    /// <summary>The image's bytes on the host (its <see cref="DiskImage.AllocatedBytes"/>), or null when it cannot tell.</summary>
    public long? AllocatedBytes => image.AllocatedBytes;

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => image.DisposeAsync();
    /// <inheritdoc/>
    public void Dispose() => image.Dispose();
}
