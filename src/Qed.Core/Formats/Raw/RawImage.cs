using System.Buffers.Binary;
using Qed.Formats.Qed;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Formats.Raw;

/// <summary>A raw image: guest offset = file offset, size = file length. Holes in the file read as zeroes.</summary>
public sealed class RawImage : DiskImage
{
    /// <summary>The bytes a format probe reads; on a probed image a write may not make them another format's header.</summary>
    private const int GuardedBytes = 512;

    private readonly IBlockStorage _file;
    private readonly bool _readOnly;
    private readonly long _size;
    private readonly SemaphoreSlim? _blockZero; // probed only: one write to block 0 at a time, so checks see each other

    /// <summary>Wraps storage as a raw image whose size is the storage's length now (its format was named, not probed).</summary>
    internal RawImage(IBlockStorage file, bool readOnly) : this(file, readOnly, probed: false)
    {
    }

    /// <summary>Wraps storage as a raw image whose size is the storage's length now.</summary>
    /// <param name="file">The storage.</param>
    /// <param name="readOnly">Refuse writes.</param>
    /// <param name="probed">The format was guessed from the content rather than named: see <see cref="IsProbed"/>.</param>
    internal RawImage(IBlockStorage file, bool readOnly, bool probed)
    {
        _file = file;
        _readOnly = readOnly || !file.CanWrite;
        _size = file.Length;
        IsProbed = probed;
        if (probed && !_readOnly) _blockZero = new SemaphoreSlim(1, 1);
    }

    /// <summary>
    /// Whether the format was probed (opened with no format named) rather than named. On a probed raw image a write,
    /// write-zeroes or discard that would leave the first 512 bytes starting with a QED or qcow2 magic is refused with
    /// <see cref="ProbedRawWriteException"/>, as QEMU restricts block 0 of a probed raw image: otherwise a guest could
    /// write a header there and the next probing open would take the file for that format, with a backing file or
    /// data file of the guest's choosing. Open with format <c>raw</c> to write such data.
    /// </summary>
    public bool IsProbed { get; }

    /// <summary>
    /// Creates a sparse raw image of <paramref name="size"/> bytes, replacing a regular file of that name (as qemu-img
    /// create -f raw). A file in use, or a name that is not a regular file, is refused untouched; on failure the file
    /// is removed only if this call created it.
    /// </summary>
    internal static Task CreateAsync(string path, long size, CancellationToken cancellationToken = default) =>
        ImageCreation.WriteNewFileAsync(path, PlanCreate(size), cancellationToken);

    /// <summary>Validates <paramref name="size"/> and returns what makes storage a sparse raw image of it.</summary>
    internal static ImageCreation.Writer PlanCreate(long size)
    {
        if (size < 0) throw new ArgumentException($"Image size must not be negative (size={size})", nameof(size));
        return async (file, ct) =>
        {
            await file.SetLengthAsync(0, ct).ConfigureAwait(false);
            await file.SetLengthAsync(size, ct).ConfigureAwait(false);
        };
    }

    /// <inheritdoc />
    public override ImageFormat Format => ImageFormat.Raw;
    /// <inheritdoc />
    public override string Name => _file.Name;
    /// <inheritdoc />
    public override long Size => _size;
    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;
    /// <inheritdoc />
    public override DiskImage? Backing => null;
    /// <inheritdoc />
    public override int ClusterSize => 4096;
    /// <inheritdoc />
    public override long? AllocatedBytes => _file.AllocatedBytes;

    /// <inheritdoc />
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return _file.ReadAsync(offset, buffer, cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="ProbedRawWriteException">The image <see cref="IsProbed">was probed</see> and the write would make block 0 a QED or qcow2 header.</exception>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        return _blockZero != null && offset < GuardedBytes && data.Length > 0
            ? GuardedAsync(offset, data.Length, data, cancellationToken)
            : _file.WriteAsync(offset, data, cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="ProbedRawWriteException">As for <see cref="WriteAsync"/> (zeroes can complete a magic too).</exception>
    public override ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return _blockZero != null && offset < GuardedBytes && length > 0
            ? GuardedAsync(offset, length, null, cancellationToken)
            : _file.ZeroRangeAsync(offset, length, cancellationToken);
    }

    /// <summary>A write (data, or zeroes when null) reaching into block 0 of a probed image: checked, then done.</summary>
    private async ValueTask GuardedAsync(long offset, long length, ReadOnlyMemory<byte>? data, CancellationToken ct)
    {
        await _blockZero!.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // What block 0 would hold afterwards: its bytes now (the file may be shorter), with the write laid over.
            var block = new byte[(int)Math.Min(GuardedBytes, _size)];
            await _file.ReadAsync(0, block, ct).ConfigureAwait(false);
            int at = (int)offset, count = (int)Math.Min(length, block.Length - at);
            if (data is { } bytes) bytes.Span[..count].CopyTo(block.AsSpan(at));
            else block.AsSpan(at, count).Clear();
            if (ProbedFormat(block) is { } format) throw new ProbedRawWriteException(Name, format);
            if (data is { } payload) await _file.WriteAsync(offset, payload, ct).ConfigureAwait(false);
            else await _file.ZeroRangeAsync(offset, length, ct).ConfigureAwait(false);
        }
        finally
        {
            _blockZero.Release();
        }
    }

    /// <summary>
    /// The format a probe of these first bytes would find other than raw, or null. Stricter than either prober
    /// alone: a QED magic, or a qcow magic of any version (QEMU takes version 1 for qcow and 2 and up for qcow2; this
    /// library's prober takes the magic alone for qcow2).
    /// </summary>
    private static string? ProbedFormat(ReadOnlySpan<byte> head)
    {
        if (head.Length < 4) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) == QedHeader.MagicValue) return "qed";
        if (BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Header.MagicValue) return "qcow2";
        return null;
    }

    /// <inheritdoc />
    public override ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        WriteZeroesAsync(offset, length, cancellationToken);

    /// <inheritdoc />
    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        _readOnly ? ValueTask.CompletedTask : _file.FlushAsync(cancellationToken);

    /// <inheritdoc />
    public override async ValueTask<LayerExtent> GetLayerExtentAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0) return new LayerExtent(offset, 0, ExtentKind.Data, offset);
        var (isData, run) = await _file.GetAllocationAsync(offset, length, cancellationToken).ConfigureAwait(false);
        // qemu-img reports a raw hole as zero with its file offset; the same here.
        return new LayerExtent(offset, Math.Max(1, run), isData ? ExtentKind.Data : ExtentKind.Zero, offset);
    }

    /// <inheritdoc />
    protected override ValueTask DisposeCoreAsync()
    {
        _blockZero?.Dispose();
        return _file.DisposeAsync();
    }
}
