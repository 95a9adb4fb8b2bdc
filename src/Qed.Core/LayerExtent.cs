namespace Qed;

/// <summary>What a range of one layer holds.</summary>
public enum ExtentKind
{
    /// <summary>Stored data at a file offset.</summary>
    Data,
    /// <summary>Reads as zeroes without storage (a zero cluster, a hole in a raw file).</summary>
    Zero,
    /// <summary>Not allocated here: read from the backing file, or zeroes without one.</summary>
    Unallocated,
}

/// <summary>A run of one layer with one kind; <see cref="FileOffset"/> is where it lives in the file, or -1.</summary>
/// <param name="Offset">Guest offset of the run.</param>
/// <param name="Length">Bytes in the run.</param>
/// <param name="Kind">What the run holds.</param>
/// <param name="FileOffset">File offset of data (and of raw holes, as qemu-img reports them), or -1.</param>
public readonly record struct LayerExtent(long Offset, long Length, ExtentKind Kind, long FileOffset);

/// <summary>
/// A run of the whole chain: which layer (<see cref="Depth"/>, 0 = the top image) supplies it and what it holds. Field
/// meanings follow <c>qemu-img map --output=json</c>.
/// </summary>
/// <param name="Offset">Guest offset of the run.</param>
/// <param name="Length">Bytes in the run.</param>
/// <param name="Depth">The layer that supplies the bytes; for an unallocated run with nothing below, 0.</param>
/// <param name="Present">Whether some layer allocates the range.</param>
/// <param name="Zero">Whether the range reads as zeroes without data.</param>
/// <param name="Data">Whether the range is stored data.</param>
/// <param name="FileOffset">Offset in the supplying layer's file, or -1.</param>
/// <param name="Layer">The image at <see cref="Depth"/> that supplies the run, or null when none does.</param>
public readonly record struct ChainExtent(long Offset, long Length, int Depth, bool Present, bool Zero, bool Data, long FileOffset, DiskImage? Layer);
