using Qed.Format;

namespace Qed;

// Streaming: pulling the backing chain's data into this image while it stays in use, then detaching the backing file.
public sealed partial class QedImage
{
    /// <summary>
    /// Allocates the unallocated clusters under [offset, offset+data.Length) (one L2 table) with <paramref name="data"/>,
    /// only if they are still unallocated: a guest write that got there first is never overwritten with stale backing
    /// data. Returns false when the clusters changed (look again).
    /// </summary>
    internal async ValueTask<bool> CopyUpAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await _gate.EnterAsync(ct).ConfigureAwait(false); // a request like any other while defragment or resize pause
        try
        {
            CheckWritable();
            CheckRange(offset, data.Length);
            ThrowIfFailed();
            return await AllocateAsync(offset, data, data.Length, ExtentKind.Unallocated, zeroClusters: false, ct).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <summary>
    /// Drops the backing file once everything it supplied has been copied in: metadata is made durable first, then the
    /// header loses its backing fields (and the old name's bytes are zeroed), then reads stop consulting it.
    /// </summary>
    internal async Task DetachBackingAsync(CancellationToken ct)
    {
        CheckWritable();
        ThrowIfFailed();
        if (_header.CompatFeatures != 0)
            throw new NotSupportedException($"'{Name}' has unknown compatible features (0x{_header.CompatFeatures:x}) that may depend on the backing file; it is left unchanged");
        await FlushAsync(ct).ConfigureAwait(false);
        await _headerWriteLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var old = _header;
            var header = old with
            {
                Features = old.Features & ~(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe),
                BackingFilenameOffset = 0,
                BackingFilenameSize = 0,
            };
            await WriteHeaderAsync(_file, header, CancellationToken.None).ConfigureAwait(false);
            await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            if (old.BackingFilenameSize > 0) // no stale name left in the header cluster
                await _file.WriteAsync(old.BackingFilenameOffset, new byte[old.BackingFilenameSize], CancellationToken.None).ConfigureAwait(false);
            await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            _header = header;
            BackingFilename = null;
        }
        finally
        {
            _headerWriteLock.Release();
        }
        var backing = _backing;
        _backing = null;
        if (backing != null) lock (_retiredBackings) _retiredBackings.Add(backing);
    }
}
