using Qed.Formats.Qed;

namespace Qed.Cli;

/// <summary>
/// Creating an image of any format from qemu-img's options: the one place that knows target formats, shared by
/// <c>create</c> and <c>convert</c>. Each <c>-o</c> option is taken by the format that understands it; leftovers
/// are an error naming them.
/// </summary>
internal static class ImageCreator
{
    /// <summary>
    /// Creates the image. Once every option is taken and known, and before any format-specific check of their values,
    /// <paramref name="announce"/> (if given) gets qemu-img create's <c>Formatting 'FILE', fmt=...</c> line: the
    /// options as qemu-img 7.2 lists them for the format, set ones and those with a default, in its order.
    /// </summary>
    public static async Task CreateAsync(string format, string path, long? size, OptionList opts, string? backing, string? backingFormat,
        bool unsafeBacking, CancellationToken ct, Action<string>? announce = null)
    {
        string head = $"Formatting '{path}', fmt={format}";
        // Option values are printed as qemu-img's option syntax writes them: a comma doubled.
        string backingPart = (backing != null ? $" backing_file={backing.Replace(",", ",,")}" : "") + (backingFormat != null ? $" backing_fmt={backingFormat}" : "");
        switch (format)
        {
            case "qed":
                long? clusterSize = opts.TakeSize("cluster_size");
                long? tableSize = opts.TakeSize("table_size");
                opts.ThrowIfAnyLeft("qed");
                if (size is null && (backing is null || unsafeBacking)) throw new CommandException("Image creation needs a size parameter");
                announce?.Invoke($"{head}{SizePart(size)}{backingPart} cluster_size={clusterSize ?? 65536}"
                    + (tableSize is { } t ? $" table_size={t}" : ""));
                var qed = new QedCreateOptions
                {
                    Size = size,
                    BackingFile = backing,
                    BackingFormat = backingFormat,
                    Unsafe = unsafeBacking,
                    ClusterSize = (uint)(clusterSize ?? 65536),
                    TableSize = (uint)(tableSize ?? 4),
                };
                await QedImage.CreateAsync(path, qed, ct);
                break;
            case "qcow2":
                long? qcowCluster = opts.TakeSize("cluster_size");
                string? compat = opts.Take("compat");
                string? prealloc = opts.Take("preallocation");
                string? lazy = opts.Take("lazy_refcounts");
                string? refcountBits = opts.Take("refcount_bits");
                string? extendedL2 = opts.Take("extended_l2");
                string? compression = opts.Take("compression_type");
                opts.ThrowIfAnyLeft("qcow2");
                if (size is null && (backing is null || unsafeBacking)) throw new CommandException("Image creation needs a size parameter");
                announce?.Invoke($"{head} cluster_size={qcowCluster ?? 65536} extended_l2={extendedL2 ?? "off"}"
                    + (prealloc != null ? $" preallocation={prealloc}" : "") + $" compression_type={compression ?? "zlib"}"
                    + $"{SizePart(size)}{backingPart}" + (compat != null ? $" compat={compat}" : "")
                    + $" lazy_refcounts={lazy ?? "off"} refcount_bits={refcountBits ?? "16"}");
                if (prealloc is not (null or "off")) throw new CommandException($"Unsupported preallocation mode '{prealloc}' (only off)");
                if (lazy is not (null or "off")) throw new CommandException($"Unsupported lazy_refcounts '{lazy}' (only off)");
                if (refcountBits is not (null or "16")) throw new CommandException($"Unsupported refcount_bits '{refcountBits}' (only 16)");
                if (extendedL2 is not (null or "off")) throw new CommandException($"Unsupported extended_l2 '{extendedL2}' (only off)");
                if (compression is not (null or "zlib")) throw new CommandException($"Unsupported compression_type '{compression}' (only zlib)");
                var qcow2 = new Formats.Qcow2.Qcow2CreateOptions
                {
                    Size = size,
                    BackingFile = backing,
                    BackingFormat = backingFormat,
                    Unsafe = unsafeBacking,
                    ClusterSize = (int)(qcowCluster ?? 65536),
                    Version = compat switch
                    {
                        null or "1.1" or "v3" => 3,
                        "0.10" or "v2" => 2,
                        var other => throw new CommandException($"Invalid compatibility level: '{other}' (use 0.10 or 1.1)"),
                    },
                };
                await Formats.Qcow2.Qcow2Image.CreateAsync(path, qcow2, ct);
                break;
            case "raw":
                string? rawPrealloc = opts.Take("preallocation");
                opts.ThrowIfAnyLeft("raw");
                if (size is null) throw new CommandException("Image creation needs a size parameter");
                if (backing != null) throw new CommandException("Backing file not supported for file format 'raw'");
                announce?.Invoke($"{head}{SizePart(size)}" + (rawPrealloc != null ? $" preallocation={rawPrealloc}" : ""));
                if (rawPrealloc is not (null or "off")) throw new CommandException($"Unsupported preallocation mode '{rawPrealloc}' (only off)");
                await Formats.Raw.RawImage.CreateAsync(path, size.Value, ct);
                break;
            default:
                throw new CommandException($"Unknown file format '{format}'");
        }
    }

    private static string SizePart(long? size) => size is { } n ? $" size={n}" : "";
}
