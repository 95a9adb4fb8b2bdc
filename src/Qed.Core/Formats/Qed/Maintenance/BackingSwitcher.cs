using System.Text;
using Qed.Format;

namespace Qed;

// Streaming: pulling the backing chain's data into this image while it stays in use, then detaching the backing file
// or switching it to a layer further down the chain.
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
    /// Makes the whole, unallocated clusters under [offset, offset+length) (one L2 table) zero clusters, only if they
    /// are all still unallocated. Returns false when the clusters changed (look again).
    /// </summary>
    internal async ValueTask<bool> CopyUpZeroesAsync(long offset, long length, CancellationToken ct)
    {
        await _gate.EnterAsync(ct).ConfigureAwait(false); // as CopyUpAsync: a request like any other
        try
        {
            CheckWritable();
            CheckRange(offset, length);
            ThrowIfFailed();
            if (((offset | length) & (_clusterSize - 1)) != 0)
                throw new ArgumentException($"Zero clusters need whole clusters (offset {offset}, length {length})");
            return await AllocateAsync(offset, default, length, ExtentKind.Unallocated, zeroClusters: true, ct).ConfigureAwait(false);
        }
        finally { _gate.Leave(); }
    }

    /// <summary>Refuses a backing change this program cannot write safely, before any data is copied.</summary>
    internal void ValidateBackingChange(string? name)
    {
        CheckWritable();
        if (_header.CompatFeatures != 0)
            throw new NotSupportedException($"'{Name}' has unknown compatible features (0x{_header.CompatFeatures:x}) that may depend on the backing file; it is left unchanged");
        if (name is null) return;
        int length = Encoding.UTF8.GetByteCount(name);
        long room = Math.Min(_headerBytes - QedHeader.Size, QedHeader.MaxBackingNameLength);
        if (length == 0) throw new ArgumentException("The new backing file name is empty");
        if (length > room)
            throw new ArgumentException($"The backing file name '{(name.Length > 60 ? name[..60] + "..." : name)}' is {length} bytes; the header area of '{Name}' has room for {room}");
    }

    /// <summary>
    /// Drops the backing file once everything it supplied has been copied in: metadata is made durable first, then the
    /// header loses its backing fields (and the old name's bytes are zeroed), then reads stop consulting it.
    /// </summary>
    internal Task DetachBackingAsync(CancellationToken ct) => SwitchBackingAsync(null, null, null, ct);

    /// <summary>
    /// Makes <paramref name="backing"/> (a layer further down the current chain, or null for none) the backing file,
    /// recorded as <paramref name="name"/> (raw <paramref name="format"/> sets BACKING_FORMAT_NO_PROBE). The caller has
    /// already copied in everything the layers being skipped supplied, so the image reads the same before and after.
    /// Everything is flushed first; the header then changes in one sector write when header and names fit in the
    /// first 512 bytes (else the new name goes to free space in the header area first and the header is switched to
    /// it in one sector write); the old name's bytes are zeroed last. A crash leaves either the old or the new chain.
    /// </summary>
    internal async Task SwitchBackingAsync(DiskImage? backing, string? name, string? format, CancellationToken ct)
    {
        ThrowIfFailed();
        ValidateBackingChange(name);
        await FlushAsync(ct).ConfigureAwait(false);
        await _headerWriteLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var old = _header;
            byte[] nameBytes = name is null ? [] : Encoding.UTF8.GetBytes(name);
            var features = old.Features & ~(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe);
            if (nameBytes.Length > 0)
            {
                features |= QedFeatures.BackingFile;
                if (format == "raw") features |= QedFeatures.BackingFormatNoProbe;
            }
            long oldStart = 0, oldEnd = 0;
            if (old.HasBackingFile)
            {
                oldStart = old.BackingFilenameOffset;
                oldEnd = Math.Min(_headerBytes, oldStart + old.BackingFilenameSize);
            }
            long at = QedHeader.Size;
            bool oneSector = Math.Max(oldEnd, at + nameBytes.Length) <= 512;
            if (!oneSector && nameBytes.Length > 0 && at < oldEnd && oldStart < at + nameBytes.Length && oldEnd + nameBytes.Length <= _headerBytes)
                at = oldEnd; // beside the old name, so the old chain stays readable until the header points here
            var header = old with
            {
                Features = features,
                BackingFilenameOffset = nameBytes.Length > 0 ? (uint)at : 0,
                BackingFilenameSize = (uint)nameBytes.Length,
            };

            bool overlap = nameBytes.Length > 0 && at < oldEnd && oldStart < at + nameBytes.Length;
            if (oneSector || overlap)
            {
                // Header, name and zeroes over every byte of the old name in one write: atomic within the first sector
                // (an overlap outside it only happens for two names too long to sit side by side in the header area).
                var buffer = new byte[Math.Max(at + nameBytes.Length, oldEnd)];
                header.WriteTo(buffer);
                nameBytes.CopyTo(buffer, at);
                await _file.WriteAsync(0, buffer, CancellationToken.None).ConfigureAwait(false);
                await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                if (nameBytes.Length > 0)
                {
                    await _file.WriteAsync(at, nameBytes, CancellationToken.None).ConfigureAwait(false);
                    await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false); // the name before the header naming it
                }
                await WriteHeaderAsync(_file, header, CancellationToken.None).ConfigureAwait(false);
                await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                if (oldEnd > oldStart) // no stale name left in the header area (the new one is beside it)
                {
                    await _file.WriteAsync(oldStart, new byte[oldEnd - oldStart], CancellationToken.None).ConfigureAwait(false);
                    await _file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            _header = header;
            BackingFilename = name;
        }
        finally
        {
            _headerWriteLock.Release();
        }
        // Reads that already hold the old chain finish on it (it reads the same); it is disposed at close.
        var previous = _backing;
        _backing = backing;
        if (previous != null && previous != backing) lock (_retiredBackings) _retiredBackings.Add(previous);
    }
}
