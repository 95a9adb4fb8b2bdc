using System.Buffers.Binary;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The qcow2 header (version 2: 72 bytes; version 3: <see cref="HeaderLength"/> bytes, at least 104), big-endian.
/// <see cref="Parse"/> only decodes; <see cref="Validate"/> checks every field against the file before anything is
/// followed or allocated.
/// </summary>
public readonly record struct Qcow2Header
{
    /// <summary>"QFI\xfb" read as a big-endian u32.</summary>
    public const uint MagicValue = 0x514649fb;
    /// <summary>Header bytes of a version 2 image.</summary>
    public const int V2Length = 72;
    /// <summary>Smallest header of a version 3 image.</summary>
    public const int V3MinLength = 104;
    /// <summary>The header length this library writes for version 3 (with the compression_type byte, as QEMU 7.2).</summary>
    public const int V3WrittenLength = 112;
    /// <summary>Smallest cluster_bits (512-byte clusters).</summary>
    public const int MinClusterBits = 9;
    /// <summary>Largest cluster_bits (2 MiB clusters, QEMU's limit).</summary>
    public const int MaxClusterBits = 21;
    /// <summary>Longest backing file name the specification allows.</summary>
    public const int MaxBackingNameLength = 1023;
    /// <summary>Largest active L1 table, in bytes (QEMU's limit).</summary>
    public const long MaxL1Bytes = 32L << 20;
    /// <summary>Largest refcount table, in bytes (QEMU's limit).</summary>
    public const long MaxRefcountTableBytes = 8L << 20;
    /// <summary>Most internal snapshots accepted.</summary>
    public const int MaxSnapshots = 65536;
    /// <summary>Compatible feature bit 0: refcounts may be updated lazily (the dirty bit then says whether they are stale).</summary>
    public const ulong LazyRefcountsBit = 1;
    /// <summary>Auto-clear feature bit 0: the bitmaps extension is consistent with the image.</summary>
    public const ulong BitmapsBit = 1;
    /// <summary>Auto-clear feature bit 1: the external data file is a raw image readable without the qcow2 metadata.</summary>
    public const ulong RawExternalDataBit = 2;

    // Field offsets, for error messages and in-place updates.
    internal const int MagicOffset = 0, VersionOffset = 4, BackingFileOffsetOffset = 8, BackingFileSizeOffset = 16,
        ClusterBitsOffset = 20, SizeOffset = 24, CryptMethodOffset = 32, L1SizeOffset = 36, L1TableOffsetOffset = 40,
        RefcountTableOffsetOffset = 48, RefcountTableClustersOffset = 56, NbSnapshotsOffset = 60,
        SnapshotsOffsetOffset = 64, IncompatibleOffset = 72, CompatibleOffset = 80, AutoclearOffset = 88,
        RefcountOrderOffset = 96, HeaderLengthOffset = 100, CompressionTypeOffset = 104;

    /// <summary>The magic number; <see cref="MagicValue"/> in a qcow2 image.</summary>
    public uint Magic { get; init; }
    /// <summary>2 or 3.</summary>
    public uint Version { get; init; }
    /// <summary>File offset of the backing file name, or 0.</summary>
    public ulong BackingFileOffset { get; init; }
    /// <summary>Length of the backing file name in bytes.</summary>
    public uint BackingFileSize { get; init; }
    /// <summary>log2 of the cluster size.</summary>
    public uint ClusterBits { get; init; }
    /// <summary>Guest-visible size in bytes.</summary>
    public ulong Size { get; init; }
    /// <summary>0 for none, 1 AES, 2 LUKS.</summary>
    public uint CryptMethod { get; init; }
    /// <summary>Entries in the active L1 table.</summary>
    public uint L1Size { get; init; }
    /// <summary>File offset of the active L1 table.</summary>
    public ulong L1TableOffset { get; init; }
    /// <summary>File offset of the refcount table.</summary>
    public ulong RefcountTableOffset { get; init; }
    /// <summary>Clusters the refcount table occupies.</summary>
    public uint RefcountTableClusters { get; init; }
    /// <summary>Number of internal snapshots.</summary>
    public uint NbSnapshots { get; init; }
    /// <summary>File offset of the snapshot table.</summary>
    public ulong SnapshotsOffset { get; init; }
    /// <summary>Incompatible feature bits (version 3).</summary>
    public Qcow2IncompatibleFeatures IncompatibleFeatures { get; init; }
    /// <summary>Compatible feature bits (version 3); bit 0 is lazy refcounts (<see cref="LazyRefcountsBit"/>).</summary>
    public ulong CompatibleFeatures { get; init; }
    /// <summary>Auto-clear feature bits (version 3).</summary>
    public ulong AutoclearFeatures { get; init; }
    /// <summary>log2 of the refcount width in bits (4 for version 2).</summary>
    public uint RefcountOrder { get; init; }
    /// <summary>Bytes in the header structure (72 for version 2).</summary>
    public uint HeaderLength { get; init; }
    /// <summary>0 for zlib (deflate), 1 for zstd; only present when <see cref="HeaderLength"/> exceeds 104.</summary>
    public byte CompressionType { get; init; }

    /// <summary>Bytes per cluster.</summary>
    public int ClusterSize => 1 << (int)ClusterBits;

    /// <summary>Whether the header names a backing file.</summary>
    public bool HasBackingFile => BackingFileOffset != 0 && BackingFileSize != 0;

    /// <summary>Decodes the header fields without judging them; <paramref name="source"/> holds at least 104 bytes (112 to see compression_type).</summary>
    internal static Qcow2Header Parse(ReadOnlySpan<byte> source)
    {
        if (source.Length < V3MinLength) throw new ArgumentException($"A qcow2 header needs {V3MinLength} bytes.", nameof(source));
        uint version = BinaryPrimitives.ReadUInt32BigEndian(source[VersionOffset..]);
        var header = new Qcow2Header
        {
            Magic = BinaryPrimitives.ReadUInt32BigEndian(source[MagicOffset..]),
            Version = version,
            BackingFileOffset = BinaryPrimitives.ReadUInt64BigEndian(source[BackingFileOffsetOffset..]),
            BackingFileSize = BinaryPrimitives.ReadUInt32BigEndian(source[BackingFileSizeOffset..]),
            ClusterBits = BinaryPrimitives.ReadUInt32BigEndian(source[ClusterBitsOffset..]),
            Size = BinaryPrimitives.ReadUInt64BigEndian(source[SizeOffset..]),
            CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(source[CryptMethodOffset..]),
            L1Size = BinaryPrimitives.ReadUInt32BigEndian(source[L1SizeOffset..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(source[L1TableOffsetOffset..]),
            RefcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(source[RefcountTableOffsetOffset..]),
            RefcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(source[RefcountTableClustersOffset..]),
            NbSnapshots = BinaryPrimitives.ReadUInt32BigEndian(source[NbSnapshotsOffset..]),
            SnapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(source[SnapshotsOffsetOffset..]),
        };
        if (version < 3)
            return header with { RefcountOrder = 4, HeaderLength = V2Length };
        uint length = BinaryPrimitives.ReadUInt32BigEndian(source[HeaderLengthOffset..]);
        return header with
        {
            IncompatibleFeatures = (Qcow2IncompatibleFeatures)BinaryPrimitives.ReadUInt64BigEndian(source[IncompatibleOffset..]),
            CompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(source[CompatibleOffset..]),
            AutoclearFeatures = BinaryPrimitives.ReadUInt64BigEndian(source[AutoclearOffset..]),
            RefcountOrder = BinaryPrimitives.ReadUInt32BigEndian(source[RefcountOrderOffset..]),
            HeaderLength = length,
            CompressionType = length > CompressionTypeOffset && source.Length > CompressionTypeOffset ? source[CompressionTypeOffset] : (byte)0,
        };
    }

    /// <summary>Encodes the header into <paramref name="destination"/> (72 bytes for version 2, else <see cref="HeaderLength"/>).</summary>
    internal void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination[MagicOffset..], Magic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[VersionOffset..], Version);
        BinaryPrimitives.WriteUInt64BigEndian(destination[BackingFileOffsetOffset..], BackingFileOffset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[BackingFileSizeOffset..], BackingFileSize);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ClusterBitsOffset..], ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(destination[SizeOffset..], Size);
        BinaryPrimitives.WriteUInt32BigEndian(destination[CryptMethodOffset..], CryptMethod);
        BinaryPrimitives.WriteUInt32BigEndian(destination[L1SizeOffset..], L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(destination[L1TableOffsetOffset..], L1TableOffset);
        BinaryPrimitives.WriteUInt64BigEndian(destination[RefcountTableOffsetOffset..], RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[RefcountTableClustersOffset..], RefcountTableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(destination[NbSnapshotsOffset..], NbSnapshots);
        BinaryPrimitives.WriteUInt64BigEndian(destination[SnapshotsOffsetOffset..], SnapshotsOffset);
        if (Version < 3) return;
        BinaryPrimitives.WriteUInt64BigEndian(destination[IncompatibleOffset..], (ulong)IncompatibleFeatures);
        BinaryPrimitives.WriteUInt64BigEndian(destination[CompatibleOffset..], CompatibleFeatures);
        BinaryPrimitives.WriteUInt64BigEndian(destination[AutoclearOffset..], AutoclearFeatures);
        BinaryPrimitives.WriteUInt32BigEndian(destination[RefcountOrderOffset..], RefcountOrder);
        BinaryPrimitives.WriteUInt32BigEndian(destination[HeaderLengthOffset..], HeaderLength);
        if (HeaderLength > CompressionTypeOffset) destination[CompressionTypeOffset] = CompressionType;
    }

    /// <summary>Guest bytes one L2 table maps.</summary>
    public long BytesPerL2 => 1L << (2 * (int)ClusterBits - 3);

    /// <summary>L1 entries needed to map <paramref name="size"/> bytes with clusters of 2^<paramref name="clusterBits"/>.</summary>
    internal static long L1EntriesFor(ulong size, int clusterBits)
    {
        int shift = 2 * clusterBits - 3;
        return (long)((size >> shift) + ((size & ((1UL << shift) - 1)) != 0 ? 1UL : 0UL));
    }

    /// <summary>
    /// Applies every rule of the format against a file of <paramref name="fileLength"/> bytes. Unknown incompatible
    /// features are refused with their names from <paramref name="featureNames"/> when the image provides them.
    /// </summary>
    /// <exception cref="ImageFormatException">A field breaks a rule; the message names it, its value and offset.</exception>
    /// <exception cref="NotSupportedException">The image uses a feature this library does not implement.</exception>
    internal void Validate(long fileLength, IReadOnlyDictionary<int, string>? featureNames = null)
    {
        if (Magic != MagicValue)
            throw new ImageFormatException("Image is not in qcow2 format", "magic", MagicOffset);
        if (Version is not (2 or 3))
            throw Invalid("Unsupported qcow2 version", "version", Version, VersionOffset, "must be 2 or 3");
        if (ClusterBits < MinClusterBits || ClusterBits > MaxClusterBits)
            throw Invalid("Unsupported cluster size", "cluster_bits", ClusterBits, ClusterBitsOffset,
                $"must be from {MinClusterBits} to {MaxClusterBits} (512 bytes to 2 MiB)");
        if (Version >= 3)
        {
            if (HeaderLength < V3MinLength || HeaderLength % 8 != 0 || HeaderLength > ClusterSize)
                throw Invalid("qcow2 header length is invalid", "header_length", HeaderLength, HeaderLengthOffset,
                    $"must be a multiple of 8 from {V3MinLength} to the cluster size {ClusterSize}");
            var unknown = IncompatibleFeatures & ~Qcow2IncompatibleFeatures.Known;
            if (unknown != 0)
            {
                var names = new List<string>();
                for (int bit = 0; bit < 64; bit++)
                    if (((ulong)unknown & (1UL << bit)) != 0)
                        names.Add(featureNames != null && featureNames.TryGetValue(bit, out var n) ? $"{n} (bit {bit})" : $"bit {bit}");
                throw new ImageFormatException(
                    $"Unsupported qcow2 incompatible features: {string.Join(", ", names)} (incompatible_features = 0x{(ulong)IncompatibleFeatures:x}, header offset {IncompatibleOffset})",
                    "incompatible_features", IncompatibleOffset);
            }
            if ((IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0)
                throw new NotSupportedException("qcow2 images with an external data file are not supported");
            if ((IncompatibleFeatures & Qcow2IncompatibleFeatures.ExtendedL2) != 0)
                throw new NotSupportedException("qcow2 images with extended L2 entries (subclusters) are not supported");
            if ((IncompatibleFeatures & Qcow2IncompatibleFeatures.CompressionType) != 0 || CompressionType != 0)
            {
                if (CompressionType == 0)
                    throw Invalid("qcow2 compression type is invalid", "compression_type", CompressionType, CompressionTypeOffset,
                        "must be non-zero when the compression type feature bit is set");
                throw new NotSupportedException($"qcow2 compression type {CompressionType} (zstd) is not supported; only zlib is");
            }
            if (RefcountOrder > 6)
                throw Invalid("qcow2 refcount order is invalid", "refcount_order", RefcountOrder, RefcountOrderOffset, "must be at most 6");
        }
        if (CryptMethod != 0)
            throw new NotSupportedException($"Encrypted qcow2 images are not supported (crypt_method = {CryptMethod})");

        long cs = ClusterSize;
        long fileClustersEnd = (fileLength + cs - 1) / cs * cs; // a trailing partial cluster still counts as present
        if (Size > long.MaxValue)
            throw Invalid("qcow2 image size is invalid", "size", Size, SizeOffset, "is too large");
        if ((long)L1Size * 8 > MaxL1Bytes)
            throw Invalid("Active L1 table too large", "l1_size", L1Size, L1SizeOffset, $"must hold at most {MaxL1Bytes} bytes");
        if (L1EntriesFor(Size, (int)ClusterBits) > L1Size)
            throw Invalid("L1 table is too small", "l1_size", L1Size, L1SizeOffset,
                $"must map the image size {Size} ({L1EntriesFor(Size, (int)ClusterBits)} entries)");
        if (L1Size > 0 && !IsInside(L1TableOffset, (long)L1Size * 8, fileLength, cs))
            throw Invalid("Invalid L1 table offset", "l1_table_offset", L1TableOffset, L1TableOffsetOffset,
                $"must be cluster aligned, past the header and hold {L1Size} entries inside the file of {fileLength} bytes", hex: true);
        if (RefcountTableClusters == 0 || (long)RefcountTableClusters * cs > MaxRefcountTableBytes)
            throw Invalid("Reference count table is invalid", "refcount_table_clusters", RefcountTableClusters,
                RefcountTableClustersOffset, $"must be from 1 to {MaxRefcountTableBytes / cs} clusters");
        if (!IsInside(RefcountTableOffset, (long)RefcountTableClusters * cs, fileClustersEnd, cs))
            throw Invalid("Invalid reference count table offset", "refcount_table_offset", RefcountTableOffset,
                RefcountTableOffsetOffset, $"must be cluster aligned, past the header and lie inside the file of {fileLength} bytes", hex: true);
        if (NbSnapshots > MaxSnapshots)
            throw Invalid("Too many snapshots", "nb_snapshots", NbSnapshots, NbSnapshotsOffset, $"must be at most {MaxSnapshots}");
        if (NbSnapshots > 0 && !IsInside(SnapshotsOffset, 40L * NbSnapshots, fileLength, cs))
            throw Invalid("Invalid snapshot table offset", "snapshots_offset", SnapshotsOffset, SnapshotsOffsetOffset,
                $"must be cluster aligned and hold {NbSnapshots} entries inside the file of {fileLength} bytes", hex: true);
        if (BackingFileOffset != 0)
        {
            if (BackingFileSize > MaxBackingNameLength)
                throw Invalid("Backing file name too long", "backing_file_size", BackingFileSize, BackingFileSizeOffset,
                    $"must be at most {MaxBackingNameLength} bytes");
            // Compared without adding, so that an offset near 2^64 cannot wrap into the cluster.
            if (BackingFileOffset > (ulong)cs || BackingFileSize > (ulong)cs - BackingFileOffset)
                throw Invalid("Invalid backing file offset", "backing_file_offset", BackingFileOffset, BackingFileOffsetOffset,
                    $"with backing_file_size = {BackingFileSize} bytes: the name must lie inside the first cluster of {cs} bytes", hex: true);
        }
    }

    /// <summary>Whether a structure of <paramref name="bytes"/> at <paramref name="offset"/> is cluster aligned, past cluster 0 and inside <paramref name="limit"/>.</summary>
    private static bool IsInside(ulong offset, long bytes, long limit, long clusterSize) =>
        offset % (ulong)clusterSize == 0 && offset >= (ulong)clusterSize && offset <= (ulong)limit && (ulong)bytes <= (ulong)limit - offset;

    private static ImageFormatException Invalid(string text, string field, ulong value, int offset, string rule, bool hex = false) =>
        new($"{text}: {field} = {(hex ? $"0x{value:x}" : value.ToString())} (header offset {offset}) {rule}", field, offset);
}
