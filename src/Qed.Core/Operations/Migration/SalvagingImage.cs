namespace Qed.Operations.Migration;

/// <summary>
/// A read-only view of a source chain for --salvage: a corrupt table entry met by a read or an allocation query
/// (<see cref="ImageFormatException"/>) fails as an <see cref="IOException"/> instead, the kind of failure
/// <see cref="ConvertOperation"/>'s salvage narrows down to sectors and copies as zeroes. qemu-img does the same: its
/// QED driver fails such a read with an I/O error, and --salvage takes any read error. Every layer is wrapped, since
/// allocation queries walk the chain layer by layer.
/// </summary>
internal sealed class SalvagingImage : DiskImage
{
    private readonly DiskImage _inner;
    private readonly bool _owner;
    private readonly SalvagingImage? _backing;

    /// <summary>Wraps <paramref name="inner"/> and its chain; disposing the wrapper disposes <paramref name="inner"/> when <paramref name="owner"/>.</summary>
    public SalvagingImage(DiskImage inner, bool owner = true)
    {
        _inner = inner;
        _owner = owner;
        _backing = inner.Backing is { } below ? new SalvagingImage(below, owner: false) : null;
    }

    public override ImageFormat Format => _inner.Format;
    public override string Name => _inner.Name;
    public override long Size => _inner.Size;
    public override bool IsReadOnly => true;
    public override DiskImage? Backing => _backing;
    public override int ClusterSize => _inner.ClusterSize;
    public override long? AllocatedBytes => _inner.AllocatedBytes;

    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            await _inner.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (ImageFormatException e)
        {
            throw new IOException(e.Message, e);
        }
    }

    public override async ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        try
        {
            return await _inner.GetLayerExtentAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }
        catch (ImageFormatException e)
        {
            throw new IOException(e.Message, e);
        }
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) => ReadOnly();
    public override ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => ReadOnly();
    public override ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => ReadOnly();
    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    private ValueTask ReadOnly() => ValueTask.FromException(new InvalidOperationException($"The image '{Name}' is open read-only."));

    protected override ValueTask DisposeCoreAsync() => _owner ? _inner.DisposeAsync() : ValueTask.CompletedTask;
}
