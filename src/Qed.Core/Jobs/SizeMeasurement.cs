namespace Qed;

/// <summary>File sizes for a new image of some format, as qemu-img measure gives them.</summary>
/// <param name="Required">Bytes the file needs to hold the data (of the source image; none with only a size).</param>
/// <param name="FullyAllocated">Bytes the file needs with every cluster allocated.</param>
public readonly record struct SizeMeasurement(long Required, long FullyAllocated);
