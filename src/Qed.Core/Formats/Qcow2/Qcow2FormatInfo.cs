namespace Qed.Formats.Qcow2;

/// <summary>
/// What <c>qemu-img info</c> 7.2 lists under "Format specific information" for a qcow2 image (its JSON
/// <c>"format-specific": {"type": "qcow2", "data": {...}}</c>), from the header as read at open.
/// </summary>
/// <param name="Compat">"0.10" for version 2, "1.1" for version 3.</param>
/// <param name="CompressionType">"zlib" or "zstd".</param>
/// <param name="LazyRefcounts">The lazy refcounts compatible feature bit; null for version 2, where qemu-img omits it.</param>
/// <param name="RefcountBits">The refcount width in bits.</param>
/// <param name="Corrupt">The corrupt incompatible feature bit; null for version 2, where qemu-img omits it.</param>
/// <param name="ExtendedL2">The extended L2 incompatible feature bit; null for version 2, where qemu-img omits it.</param>
public sealed record Qcow2FormatInfo(string Compat, string CompressionType, bool? LazyRefcounts, int RefcountBits, bool? Corrupt, bool? ExtendedL2)
{
    /// <summary>The fields for <paramref name="header"/>.</summary>
    internal static Qcow2FormatInfo FromHeader(Qcow2Header header)
    {
        bool v3 = header.Version >= 3;
        return new Qcow2FormatInfo(
            v3 ? "1.1" : "0.10",
            header.CompressionType == 1 ? "zstd" : "zlib",
            v3 ? (header.CompatibleFeatures & Qcow2Header.LazyRefcountsBit) != 0 : null,
            1 << (int)header.RefcountOrder,
            v3 ? (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0 : null,
            v3 ? (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExtendedL2) != 0 : null);
    }
}
