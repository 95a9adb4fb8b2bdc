using System.Text;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// The header area as it is now, and every change to it on disk: the NEED_CHECK bit and the recovery record's bit,
/// the guest size, the backing file, and the recovery record's sectors.
/// </summary>
/// <remarks>
/// Invariants: one write to the header area at a time (its own lock), each synced before <see cref="Current"/> shows
/// it, so what the image reports is on disk; only the 64-byte header, the backing name and the recovery record
/// (<see cref="RecoveryRecordFormat"/>) are written; a backing change leaves on disk, at any instant, either the old chain or
/// the new one; the record's bit is set only with NEED_CHECK and cleared with it, and a backing name written over the
/// record's area clears the bit in the header that names it and drops the record for the session.
/// </remarks>
internal sealed class HeaderWriter(IBlockStorage file, QedHeader header, string? backingName)
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly long _headerBytes = (long)header.HeaderSize * header.ClusterSize;
    private readonly RecoveryRecordFormat? _record = RecoveryRecordFormat.For(header);
    private volatile bool _recordDropped;
    private QedHeader _header = header;

    /// <summary>Where the recovery record lies, or null when this session keeps none.</summary>
    public RecoveryRecordFormat? Record => _recordDropped ? null : _record;

    /// <summary>
    /// Writes recovery record sectors (whole sectors inside the record's area) and returns once they are durable:
    /// with a flush of the file when <paramref name="flushAll"/> (an epoch's start, before the header write that
    /// follows it, which does not flush first), else each by a ranged durable write, so a table touched mid-epoch does
    /// not wait for all the data written since the last flush. Returns false, writing nothing, when the session keeps
    /// no record.
    /// </summary>
    public async Task<bool> WriteRecordAsync(IReadOnlyList<(long Offset, byte[] Sector)> sectors, bool flushAll)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_record is null || _recordDropped) return false;
            foreach (var (offset, sector) in sectors)
            {
                if (flushAll) await file.WriteAsync(offset, sector, CancellationToken.None).ConfigureAwait(false);
                else await file.WriteDurableAsync(offset, sector, CancellationToken.None).ConfigureAwait(false);
            }
            if (flushAll) await file.FlushAsync().ConfigureAwait(false);
            return true;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>The header as it is now.</summary>
    public QedHeader Current => _header;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingName { get; private set; } = backingName;

    /// <summary>Writes the 64-byte header at offset 0 (the backing name after it is left alone).</summary>
    public static ValueTask WriteAsync(IBlockStorage file, QedHeader header, CancellationToken ct)
    {
        var bytes = new byte[QedHeader.Size];
        header.WriteTo(bytes);
        return file.WriteAsync(0, bytes, ct);
    }

    /// <summary>
    /// Sets NEED_CHECK on disk, with the recovery record's bit when <paramref name="recorded"/> (its head is durable), or
    /// clears both; a clear syncs first, so what the bits protect is durable before.
    /// </summary>
    public Task SetNeedCheckAsync(bool set, bool recorded = false) => ChangeAsync(
        h => set
            ? h with
            {
                Features = h.Features | QedFeatures.NeedCheck,
                AutoclearFeatures = recorded && !_recordDropped ? h.AutoclearFeatures | RecoveryRecordFormat.AutoclearBit : h.AutoclearFeatures,
            }
            : h with { Features = h.Features & ~QedFeatures.NeedCheck, AutoclearFeatures = h.AutoclearFeatures & ~RecoveryRecordFormat.AutoclearBit },
        syncFirst: !set);

    /// <summary>Writes the guest size into the header and syncs it.</summary>
    public Task WriteSizeAsync(long newSize) => ChangeAsync(h => h with { ImageSize = (ulong)newSize }, syncFirst: false);

    private async Task ChangeAsync(Func<QedHeader, QedHeader> change, bool syncFirst)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (syncFirst) await file.FlushAsync().ConfigureAwait(false);
            var header = change(_header);
            await WriteAsync(file, header, CancellationToken.None).ConfigureAwait(false);
            await file.FlushAsync().ConfigureAwait(false);
            _header = header;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Refuses a backing change this program cannot write safely (before any data is copied).</summary>
    public void ValidateBackingChange(string? name, string imageName)
    {
        var header = _header;
        if (header.CompatFeatures != 0)
            throw new NotSupportedException($"'{imageName}' has unknown compatible features (0x{header.CompatFeatures:x}) that may depend on the backing file; it is left unchanged");
        if (name is null) return;
        int length = Encoding.UTF8.GetByteCount(name);
        long room = Math.Min(_headerBytes - QedHeader.Size, QedHeader.MaxBackingNameLength);
        if (length == 0) throw new ArgumentException("The new backing file name is empty");
        if (length > room)
            throw new ArgumentException($"The backing file name '{(name.Length > 60 ? name[..60] + "..." : name)}' is {length} bytes; the header area of '{imageName}' has room for {room}");
    }

    /// <summary>
    /// Records <paramref name="name"/> (or none) as the backing file, raw <paramref name="format"/> setting
    /// BACKING_FORMAT_NO_PROBE. The header changes in one sector write when header and names fit in the first 512
    /// bytes (else the new name goes to free space in the header area first and the header is switched to it in one
    /// sector write); the old name's bytes are zeroed last. A crash leaves either the old or the new chain.
    /// </summary>
    public async Task SwitchBackingAsync(string? name, string? format, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
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
            if (_record != null && !_recordDropped && _record.Overlaps(at, nameBytes.Length))
            {
                // The name needs the record's area: the record stops here. Until this header lands, a crash finds the
                // area damaged (so untrusted); after it, the bit is clear. NEED_CHECK alone covers the session.
                _recordDropped = true;
                header = header with { AutoclearFeatures = header.AutoclearFeatures & ~RecoveryRecordFormat.AutoclearBit };
            }

            bool overlap = nameBytes.Length > 0 && at < oldEnd && oldStart < at + nameBytes.Length;
            if (oneSector || overlap)
            {
                // Header, name and zeroes over every byte of the old name in one write: atomic within the first sector
                // (an overlap outside it only happens for two names too long to sit side by side in the header area).
                var buffer = new byte[Math.Max(at + nameBytes.Length, oldEnd)];
                header.WriteTo(buffer);
                nameBytes.CopyTo(buffer, at);
                await file.WriteAsync(0, buffer, CancellationToken.None).ConfigureAwait(false);
                await file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                if (nameBytes.Length > 0)
                {
                    await file.WriteAsync(at, nameBytes, CancellationToken.None).ConfigureAwait(false);
                    await file.FlushAsync(CancellationToken.None).ConfigureAwait(false); // the name before the header naming it
                }
                await WriteAsync(file, header, CancellationToken.None).ConfigureAwait(false);
                await file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                if (oldEnd > oldStart) // no stale name left in the header area (the new one is beside it)
                {
                    await file.WriteAsync(oldStart, new byte[oldEnd - oldStart], CancellationToken.None).ConfigureAwait(false);
                    await file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            _header = header;
            BackingName = name;
        }
        finally
        {
            _lock.Release();
        }
    }
}
