namespace Qed;

/// <summary>
/// How <see cref="ImageFile.ConvertAsync(string, string, ImageFormat, ConvertOptions?, IProgress{ImageProgress}?, CancellationToken)"/>
/// copies, and the new target's layout.
/// </summary>
public sealed record ConvertOptions
{
    /// <summary>
    /// Whether the target is known to read as zeroes everywhere (a new image without a backing file): then ranges
    /// that are zero in the source are not written at all. Otherwise each chunk of the target is read first and only
    /// the blocks that differ are written, zero blocks as write-zeroes (for a target with a backing file, these are
    /// the zero clusters that hide non-zero backing data).
    /// </summary>
    /// <remarks>Set by the job, never by a caller: only a target this library just created (or the qed tool's
    /// <c>--target-is-zero</c>) is known to read as zeroes; a wrong claim would leave old data where the source has zeroes.</remarks>
    internal bool TargetIsZeroed { get; init; } = true;

    /// <summary>
    /// The granularity, in bytes, at which all-zero data is detected and skipped (qemu-img's <c>-S</c>, default
    /// 4 KiB). 0 writes every byte of the source as data, zeroes included (full allocation).
    /// </summary>
    public int MinSparse { get; init; } = 4096;

    /// <summary>
    /// How to create the new target: its cluster size, and the target format's own options as a
    /// <see cref="Formats.Qed.QedCreateOptions"/> or <see cref="Formats.Qcow2.Qcow2CreateOptions"/>; null for the
    /// format's defaults. The size is always the source's (a size given here is replaced), and a backing file is refused:
    /// the target of a convert by path stands alone.
    /// </summary>
    public ImageCreateOptions? Target { get; init; }

    /// <summary>The source's format; null to probe it.</summary>
    public ImageFormat? SourceFormat { get; init; }

    /// <summary>Chunk copies kept in flight at once.</summary>
    public int Parallelism { get; init; } = 8;

    /// <summary>
    /// Bytes per chunk copy (a multiple of <see cref="MinSparse"/>). The default, 2 MiB, is qemu-img's request size
    /// (observed: its read errors name offsets at 2 MiB steps inside a data run), so that a failed read names the
    /// offset qemu-img names.
    /// </summary>
    public int ChunkSize { get; init; } = 2 << 20;

    /// <summary>
    /// qemu-img convert's <c>--salvage</c> for data: when set, a chunk whose read fails is read again 512 bytes at a
    /// time and every sector that still fails is copied as zeroes; each failure is reported here (the sector's offset
    /// and the error) instead of failing the copy. Only I/O errors (<see cref="IOException"/>) are salvaged.
    /// </summary>
    public Action<long, IOException>? OnReadError { get; init; }

    /// <summary>
    /// qemu-img convert's <c>--salvage</c> for allocation queries: when set, a query of the source's allocation that
    /// fails is narrowed down to the 512-byte sectors whose query fails; each is reported here (its offset and the
    /// error) and copied as data, so it comes out right if it can be read. As qemu-img does (it first counts what it
    /// will copy), the whole source is queried once before the copy and again during it, so each such sector is
    /// reported twice. Only I/O errors (<see cref="IOException"/>) are salvaged.
    /// </summary>
    public Action<long, IOException>? OnBlockStatusError { get; init; }

    /// <summary>Whether either salvage callback is set: then chunks are copied one at a time, in order.</summary>
    internal bool Salvage => OnReadError != null || OnBlockStatusError != null;
}
