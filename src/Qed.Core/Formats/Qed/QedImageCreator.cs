using System.Text;
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
    /// opened, before the file is touched; if writing fails the file is removed (if this call created it).
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static Task CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        ImageCreation.CreateFileAsync(path, ImageFormat.Qed, options, cancellationToken);

    /// <summary>Writes a new, empty QED image onto <paramref name="storage"/> (whose old content is discarded).</summary>
    public static async Task CreateAsync(IBlockStorage storage, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        await Plan(options, ImageCreation.RequireSize(options)).Invoke(storage, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Validates the options (opening the backing file for its size where they say so) and returns what writes the
    /// image; nothing is written yet.
    /// </summary>
    internal static async Task<ImageCreation.Writer> PlanAsync(string path, QedCreateOptions options, CancellationToken ct)
    {
        long size = await ImageCreation.ResolveSizeAsync(path, options, ct).ConfigureAwait(false);
        return Plan(options, size);
    }

    /// <summary>Validates the options for a guest of <paramref name="size"/> bytes and returns what writes the image.</summary>
    internal static ImageCreation.Writer Plan(QedCreateOptions options, long size)
    {
        var (header, name) = PlanLayout(options, size);
        return (storage, ct) => WriteLayoutAsync(storage, header, name, ct);
    }

    /// <summary>Validates the options and builds the header; refuses geometries QEMU 7.2 creates but cannot open.</summary>
    internal static (QedHeader Header, byte[] BackingName) PlanLayout(QedCreateOptions options, long size)
    {
        // Negative values wrap to huge ones, which no range check passes.
        uint cs = (uint)(options.ClusterSize ?? QedCreateOptions.DefaultClusterSize), ts = (uint)options.TableSize;
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
            ImageCreation.CheckBackingFormat(options);
            name = Encoding.UTF8.GetBytes(options.BackingFile);
            if (name.Length == 0) throw new ArgumentException("The backing file name is empty");
            if (name.Length > QedHeader.MaxBackingNameLength || QedHeader.Size + name.Length > cs)
                throw new ArgumentException($"The backing file name is {name.Length} bytes; it must fit in the header cluster after 64 bytes and be under 4096 bytes");
            features = QedFeatures.BackingFile;
            if (options.BackingFormat == ImageFormat.Raw) features |= QedFeatures.BackingFormatNoProbe;
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
