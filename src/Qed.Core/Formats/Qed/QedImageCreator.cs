using System.Text;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Formats.Qed;

/// <summary>
/// Creates QED images byte-identical to <c>qemu-img create -f qed</c>: the header cluster (header, then the backing
/// name at offset 64) and a zeroed L1 table at cluster 1; nothing else.
/// </summary>
/// <remarks>
/// Invariants: every option is validated, and the backing file opened, before the file is touched; geometries QEMU
/// 7.2 creates but cannot open are refused; the L1 table is left sparse (it reads as zeroes), as qemu-img leaves it.
/// </remarks>
internal static class QedImageCreator
{
    /// <summary>
    /// Creates a QED image file, replacing any file of that name. All options are validated, and the backing file
    /// opened, before the file is touched; if writing fails the file is removed.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static async Task CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default)
    {
        long size = await ImageCreation.ResolveSizeAsync(path, options.Size, options.BackingFile, options.BackingFormat, options.Unsafe, cancellationToken).ConfigureAwait(false);
        var (header, name) = PlanLayout(options, size);
        await ImageCreation.WriteNewFileAsync(path, file => WriteLayoutAsync(file, header, name, cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>Writes a new, empty QED image onto <paramref name="storage"/> (whose old content is discarded).</summary>
    public static async Task CreateAsync(IBlockStorage storage, QedCreateOptions options, CancellationToken cancellationToken = default)
    {
        if (options.Size is null) throw new ArgumentException("Image creation needs a size parameter", nameof(options));
        var (header, name) = PlanLayout(options, options.Size.Value);
        await WriteLayoutAsync(storage, header, name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Validates the options and builds the header; refuses geometries QEMU 7.2 creates but cannot open.</summary>
    internal static (QedHeader Header, byte[] BackingName) PlanLayout(QedCreateOptions options, long size)
    {
        uint cs = options.ClusterSize, ts = options.TableSize;
        if (!QedHeader.IsPowerOfTwoIn(cs, QedHeader.MinClusterSize, QedHeader.MaxClusterSize))
            throw new ArgumentException("QED cluster size must be within range [4096, 67108864] and power of 2");
        if (!QedHeader.IsPowerOfTwoIn(ts, 1, QedHeader.MaxTableSize))
            throw new ArgumentException("QED table size must be within range [1, 16] and power of 2");
        if (ts == 1)
            throw new ArgumentException("QED table_size=1 is refused: QEMU creates such images but can never open them; use 2 to 16");
        long max = QedHeader.MaxImageSize(cs, ts);
        if (QedHeader.QemuMaxImageSize(cs, ts) == 0)
            throw new ArgumentException($"QED cluster_size={cs} with table_size={ts} is refused: QEMU computes the maximum image size as 0 for it and could not open the image");
        if (size < 0) throw new ArgumentException($"Image size must not be negative (size={size})");
        long rounded = size > long.MaxValue - 511 ? long.MaxValue : (size + 511) & ~511L;
        if (rounded > max)
            // qemu-img's words ("non-zero multiple of cluster size" is its wording; it takes any size and rounds up to 512).
            throw new ArgumentException($"QED image size must be a non-zero multiple of cluster size and less than {max} bytes");

        byte[] name = [];
        var features = QedFeatures.None;
        if (options.BackingFile != null)
        {
            if (options.BackingFormat != null && !QedImage.KnownFormats.Contains(options.BackingFormat))
                throw new ArgumentException($"Unknown backing file format '{options.BackingFormat}'");
            name = Encoding.UTF8.GetBytes(options.BackingFile);
            if (name.Length == 0) throw new ArgumentException("The backing file name is empty");
            if (name.Length > QedHeader.MaxBackingNameLength || QedHeader.Size + name.Length > cs)
                throw new ArgumentException($"The backing file name is {name.Length} bytes; it must fit in the header cluster after 64 bytes and be under 4096 bytes");
            features = QedFeatures.BackingFile;
            if (options.BackingFormat == "raw") features |= QedFeatures.BackingFormatNoProbe;
        }
        var header = new QedHeader
        {
            Magic = QedHeader.MagicValue,
            ClusterSize = cs,
            TableSize = ts,
            HeaderSize = 1,
            Features = features,
            L1TableOffset = cs,
            ImageSize = (ulong)rounded,
            BackingFilenameOffset = name.Length > 0 ? (uint)QedHeader.Size : 0,
            BackingFilenameSize = (uint)name.Length,
        };
        return (header, name);
    }

    private static async Task WriteLayoutAsync(IBlockStorage storage, QedHeader header, byte[] backingName, CancellationToken ct)
    {
        var cluster = new byte[header.ClusterSize];
        header.WriteTo(cluster);
        backingName.CopyTo(cluster, QedHeader.Size);
        await storage.SetLengthAsync(0, ct).ConfigureAwait(false);
        await storage.WriteAsync(0, cluster, ct).ConfigureAwait(false);
        // The L1 table reads as zeroes without being written; the file stays sparse as qemu-img's does.
        await storage.SetLengthAsync((long)header.ClusterSize * (1 + header.TableSize), ct).ConfigureAwait(false);
        await storage.FlushAsync(ct).ConfigureAwait(false);
    }
}
