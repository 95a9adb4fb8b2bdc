namespace Qed;

/// <summary>The outcome of comparing two images' guest content.</summary>
/// <param name="Identical">Whether the images read the same (with qemu's rule for different sizes).</param>
/// <param name="MismatchOffset">The 512-byte sector offset of the first difference, or null.</param>
/// <param name="SizeMismatch">Whether the images differ in size.</param>
/// <param name="InCommonPart">Whether the difference lies in the range both images have (rather than in the extra part).</param>
/// <param name="StatusMismatch">Strict mode only: the images' allocation differs at <paramref name="MismatchOffset"/>
/// (a byte offset), whatever the content.</param>
public readonly record struct CompareResult(bool Identical, long? MismatchOffset, bool SizeMismatch, bool InCommonPart = false, bool StatusMismatch = false);
