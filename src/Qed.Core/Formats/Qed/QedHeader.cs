using System.Buffers.Binary;
using System.Numerics;

namespace Qed.Formats.Qed;

/// <summary>
/// The 64-byte QED header, little-endian. <see cref="Parse"/> only decodes; <see cref="Validate"/> applies every rule of
/// the format in the order QEMU does, so the first complaint matches qemu-img's.
/// </summary>
public readonly record struct QedHeader
{
    /// <summary>Bytes in the packed header.</summary>
    public const int Size = 64;
    /// <summary>"QED\0" read as a little-endian u32.</summary>
    public const uint MagicValue = 0x00444551;
    /// <summary>Smallest cluster size, 4 KiB.</summary>
    public const uint MinClusterSize = 4096;
    /// <summary>Largest cluster size, 64 MiB.</summary>
    public const uint MaxClusterSize = 64u << 20;
    /// <summary>Largest table size, in clusters.</summary>
    public const uint MaxTableSize = 16;
    /// <summary>Longest backing file name QEMU reads (PATH_MAX - 1).</summary>
    public const int MaxBackingNameLength = 4095;

    // Field offsets in the header, for error messages and serialisation.
    internal const int MagicOffset = 0, ClusterSizeOffset = 4, TableSizeOffset = 8, HeaderSizeOffset = 12,
        FeaturesOffset = 16, CompatFeaturesOffset = 24, AutoclearFeaturesOffset = 32, L1TableOffsetOffset = 40,
        ImageSizeOffset = 48, BackingNameOffsetOffset = 56, BackingNameSizeOffset = 60;

    /// <summary>The magic number; <see cref="MagicValue"/> in a QED image.</summary>
    public uint Magic { get; init; }
    /// <summary>Bytes per cluster.</summary>
    public uint ClusterSize { get; init; }
    /// <summary>Clusters per L1 or L2 table.</summary>
    public uint TableSize { get; init; }
    /// <summary>Clusters before the first regular cluster.</summary>
    public uint HeaderSize { get; init; }
    /// <summary>Incompatible feature bits.</summary>
    public QedFeatures Features { get; init; }
    /// <summary>Compatible feature bits: unknown ones are ignored but preserved.</summary>
    public ulong CompatFeatures { get; init; }
    /// <summary>Auto-clear feature bits: unknown ones are cleared on a read-write open.</summary>
    public ulong AutoclearFeatures { get; init; }
    /// <summary>File offset of the L1 table.</summary>
    public ulong L1TableOffset { get; init; }
    /// <summary>Guest-visible size in bytes.</summary>
    public ulong ImageSize { get; init; }
    /// <summary>File offset of the backing file name.</summary>
    public uint BackingFilenameOffset { get; init; }
    /// <summary>Length of the backing file name in bytes, without a terminator.</summary>
    public uint BackingFilenameSize { get; init; }

    /// <summary>Whether the header names a backing file (the bit is set and the name is not empty).</summary>
    public bool HasBackingFile => (Features & QedFeatures.BackingFile) != 0 && BackingFilenameSize != 0;

    /// <summary>Whether the NEED_CHECK bit is set.</summary>
    public bool NeedsCheck => (Features & QedFeatures.NeedCheck) != 0;

    /// <summary>Decodes the header fields without judging them.</summary>
    internal static QedHeader Parse(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size) throw new ArgumentException($"A QED header needs {Size} bytes.", nameof(source));
        return new QedHeader
        {
            Magic = BinaryPrimitives.ReadUInt32LittleEndian(source[MagicOffset..]),
            ClusterSize = BinaryPrimitives.ReadUInt32LittleEndian(source[ClusterSizeOffset..]),
            TableSize = BinaryPrimitives.ReadUInt32LittleEndian(source[TableSizeOffset..]),
            HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(source[HeaderSizeOffset..]),
            Features = (QedFeatures)BinaryPrimitives.ReadUInt64LittleEndian(source[FeaturesOffset..]),
            CompatFeatures = BinaryPrimitives.ReadUInt64LittleEndian(source[CompatFeaturesOffset..]),
            AutoclearFeatures = BinaryPrimitives.ReadUInt64LittleEndian(source[AutoclearFeaturesOffset..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64LittleEndian(source[L1TableOffsetOffset..]),
            ImageSize = BinaryPrimitives.ReadUInt64LittleEndian(source[ImageSizeOffset..]),
            BackingFilenameOffset = BinaryPrimitives.ReadUInt32LittleEndian(source[BackingNameOffsetOffset..]),
            BackingFilenameSize = BinaryPrimitives.ReadUInt32LittleEndian(source[BackingNameSizeOffset..]),
        };
    }

    /// <summary>Encodes the header into the first 64 bytes of <paramref name="destination"/>.</summary>
    internal void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination[MagicOffset..], Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[ClusterSizeOffset..], ClusterSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[TableSizeOffset..], TableSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderSizeOffset..], HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[FeaturesOffset..], (ulong)Features);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[CompatFeaturesOffset..], CompatFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[AutoclearFeaturesOffset..], AutoclearFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[L1TableOffsetOffset..], L1TableOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[ImageSizeOffset..], ImageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[BackingNameOffsetOffset..], BackingFilenameOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[BackingNameSizeOffset..], BackingFilenameSize);
    }

    /// <summary>
    /// The largest image size the geometry can address: entries² × cluster_size, computed exactly and capped at
    /// <see cref="long.MaxValue"/> (QEMU computes it in wrapping 64-bit arithmetic, see <see cref="QemuMaxImageSize"/>).
    /// </summary>
    internal static long MaxImageSize(uint clusterSize, uint tableSize)
    {
        int bits = 2 * (BitOperations.Log2(tableSize) + BitOperations.Log2(clusterSize) - 3) + BitOperations.Log2(clusterSize);
        return bits >= 63 ? long.MaxValue : 1L << bits;
    }

    /// <summary>QEMU 7.2's maximum, which wraps to 0 for large geometries (its bug 3): images it cannot open.</summary>
    internal static ulong QemuMaxImageSize(uint clusterSize, uint tableSize)
    {
        ulong entries = (ulong)tableSize * clusterSize / 8;
        return unchecked(entries * entries * clusterSize);
    }

    /// <summary>Whether a value is a power of two within [min, max].</summary>
    internal static bool IsPowerOfTwoIn(ulong value, ulong min, ulong max) =>
        value >= min && value <= max && BitOperations.IsPow2(value);

    /// <summary>
    /// Applies every rule of the format against a file of <paramref name="fileLength"/> bytes, in QEMU's order.
    /// </summary>
    /// <exception cref="ImageFormatException">A field breaks a rule; the message names it, its value and offset.</exception>
    internal void Validate(long fileLength)
    {
        if (Magic != MagicValue || fileLength < Size)
            throw new ImageFormatException("Image not in QED format", "magic", MagicOffset);

        var unknown = (ulong)(Features & ~QedFeatures.Known);
        if (unknown != 0)
            throw new ImageFormatException($"Unsupported QED features: {unknown:x}", "features", FeaturesOffset);

        if (!IsPowerOfTwoIn(ClusterSize, MinClusterSize, MaxClusterSize))
            throw Invalid("QED cluster size is invalid", "cluster_size", ClusterSize, ClusterSizeOffset,
                "must be a power of 2 from 4096 to 67108864");

        if (!IsPowerOfTwoIn(TableSize, 1, MaxTableSize))
            throw Invalid("QED table size is invalid", "table_size", TableSize, TableSizeOffset,
                "must be a power of 2 from 1 to 16");

        // Geometries whose maximum QEMU computes as 0 (its bug 3) have tables of 64 MiB and more (1 GiB at 64 MiB
        // clusters and 16-cluster tables): QEMU cannot create them and opens them only at size 0, and following one
        // would take memory for whole tables that a sparse file of a few KiB names. They are refused, as create
        // refuses them; with a size, in QEMU's words.
        if (QemuMaxImageSize(ClusterSize, TableSize) == 0)
        {
            long tableBytes = (long)ClusterSize * TableSize;
            string why = $"with cluster_size {ClusterSize} and table_size {TableSize} each table takes {tableBytes} bytes; " +
                "QEMU computes the maximum image size of this geometry as 0 and cannot create it";
            throw ImageSize != 0
                ? Invalid("QED image size is invalid", "image_size", ImageSize, ImageSizeOffset, $"cannot be opened: {why}")
                : Invalid("QED table size is invalid", "table_size", TableSize, TableSizeOffset, $"is refused: {why}");
        }

        long max = MaxImageSize(ClusterSize, TableSize);
        if (ImageSize % 512 != 0 || ImageSize > (ulong)max)
            throw Invalid("QED image size is invalid", "image_size", ImageSize, ImageSizeOffset,
                $"must be a multiple of 512 and at most {max}");

        // A header of 0 clusters is refused (QEMU opens it); a header too large for the file is reported as an L1
        // table inside the header, as QEMU words it, before the header's own upper bound.
        if (HeaderSize == 0)
            throw Invalid("QED header size is invalid", "header_size", HeaderSize, HeaderSizeOffset,
                $"must be from 1 to {uint.MaxValue / ClusterSize} clusters");

        long clusters = fileLength / ClusterSize; // a trailing partial cluster does not count
        if (!IsValidTableOffset(L1TableOffset, clusters))
            throw Invalid("QED table offset is invalid", "l1_table_offset", L1TableOffset, L1TableOffsetOffset,
                $"must be cluster aligned, past the {HeaderSize}-cluster header and hold {TableSize} clusters inside the file of {fileLength} bytes",
                hex: true);

        if (HeaderSize > uint.MaxValue / ClusterSize)
            throw Invalid("QED header size is invalid", "header_size", HeaderSize, HeaderSizeOffset,
                $"must be from 1 to {uint.MaxValue / ClusterSize} clusters");

        if ((Features & QedFeatures.BackingFile) != 0)
        {
            ulong end = (ulong)BackingFilenameOffset + BackingFilenameSize;
            if (end > (ulong)HeaderSize * ClusterSize)
                throw Invalid("QED backing filename offset is invalid", "backing_filename_offset", BackingFilenameOffset,
                    BackingNameOffsetOffset, $"with {BackingFilenameSize} bytes, the name must end inside the {HeaderSize * ClusterSize}-byte header area");
            if (BackingFilenameSize > MaxBackingNameLength)
                throw Invalid("Failed to read backing filename", "backing_filename_size", BackingFilenameSize,
                    BackingNameSizeOffset, $"is longer than {MaxBackingNameLength} bytes");
        }
    }

    /// <summary>
    /// Whether a table (L1 or L2) may start at <paramref name="offset"/>: cluster aligned, past the header area and
    /// with all <see cref="TableSize"/> clusters inside a file of <paramref name="fileClusters"/> whole clusters.
    /// Unlike QEMU 7.2 (its bug 1) this accepts table_size 1.
    /// </summary>
    internal bool IsValidTableOffset(ulong offset, long fileClusters)
    {
        if (offset % ClusterSize != 0) return false;
        ulong cluster = offset / ClusterSize;
        return cluster >= HeaderSize && cluster + TableSize <= (ulong)fileClusters;
    }

    private static ImageFormatException Invalid(string qemuText, string field, ulong value, int offset, string rule, bool hex = false) =>
        // The message is qemu's bare words (scripts and QEMU's iotests read them); the field, value and rule are kept in
        // the inner exception, which --debug prints.
        new(qemuText, field, offset, new InvalidDataException($"{field} = {(hex ? $"0x{value:x}" : value.ToString())} (header offset {offset}) {rule}"));
}
