using Qed.Formats.Qcow2;
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
    /// Creates the image (closed: the file is what qemu-img writes). Once every option is taken and known, and before any format-specific check of their values,
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
                    BackingFormat = ParseBackingFormat(backingFormat),
                    BackingCheck = unsafeBacking ? BackingFileCheck.None : BackingFileCheck.Open,
                    // Beyond int is refused by the layout with qemu-img's words, as any other invalid value.
                    ClusterSize = clusterSize is not { } c ? null : Int(c),
                    TableSize = tableSize is not { } n ? 4 : Int(n),
                };
                await ImageCreation.CreateFileAsync(path, ImageFormat.Qed, qed, ct);
                break;
            case "qcow2":
                await CreateQcow2Async(path, size, opts, backing, backingFormat, unsafeBacking, head, backingPart, announce, ct);
                break;
            case "raw":
                string? rawPrealloc = opts.Take("preallocation");
                opts.ThrowIfAnyLeft("raw");
                if (size is null) throw new CommandException("Image creation needs a size parameter");
                if (backing != null) throw new CommandException("Backing file not supported for file format 'raw'");
                announce?.Invoke($"{head}{SizePart(size)}" + (rawPrealloc != null ? $" preallocation={rawPrealloc}" : ""));
                if (rawPrealloc is not (null or "off")) throw new CommandException($"Unsupported preallocation mode '{rawPrealloc}' (only off)");
                await ImageCreation.CreateFileAsync(path, ImageFormat.Raw, new ImageCreateOptions { Size = size }, ct);
                break;
            default:
                throw new CommandException($"Unknown file format '{format}'");
        }
    }

    private static string SizePart(long? size) => size is { } n ? $" size={n}" : "";

    /// <summary>A size option as int; beyond int is -1, which every range check refuses with qemu-img's words.</summary>
    private static int Int(long value) => value is >= 0 and <= int.MaxValue ? (int)value : -1;

    /// <summary>The backing format by qemu-img's name; another name is refused with its words (after the Formatting line, as it does).</summary>
    private static ImageFormat? ParseBackingFormat(string? name) =>
        name is null ? null : ImageFormatNames.TryParse(name, out var format) ? format
            : throw new CreateRefusedException($"Parameter 'backing-fmt' does not accept value '{name}'");

    /// <summary>
    /// qcow2 as qemu-img 7.2 creates it. Three stages, each as qemu-img orders them: every option's type is checked as
    /// the list reads, in the order given (an unknown key, a size, number or on/off that does not parse), before the
    /// Formatting line; then the enumerated values (compat, preallocation, compression_type); then the combinations,
    /// which <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/>
    /// checks in qemu-img's order, refusing last what qemu-img accepts but qed cannot open (extended_l2, zstd).
    /// </summary>
    private static async Task CreateQcow2Async(string path, long? size, OptionList opts, string? backing, string? backingFormat,
        bool unsafeBacking, string head, string backingPart, Action<string>? announce, CancellationToken ct)
    {
        foreach (string key in opts.Keys)
        {
            string value = opts.Peek(key)!;
            switch (key)
            {
                case "cluster_size":
                    if (!SizeParser.TryParse(value, out _))
                        throw new CommandException($"Parameter '{key}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.");
                    break;
                case "lazy_refcounts" or "extended_l2":
                    ParseOnOff(key, value);
                    break;
                case "refcount_bits":
                    ParseNumber(key, value);
                    break;
                case "compat" or "preallocation" or "compression_type":
                    break;
                case "data_file" or "data_file_raw":
                    throw new CommandException($"Parameter '{key}' is not supported: qed cannot create qcow2 images with an external data file");
                case "encryption" or "encrypt.format" or "encrypt.key-secret" or "encrypt.cipher-alg" or "encrypt.cipher-mode"
                    or "encrypt.ivgen-alg" or "encrypt.ivgen-hash-alg" or "encrypt.hash-alg" or "encrypt.iter-time":
                    throw new CommandException($"Parameter '{key}' is not supported: qed cannot create encrypted qcow2 images");
                default:
                    throw new CommandException($"Invalid parameter '{key}'");
            }
        }
        long? clusterSize = opts.TakeSize("cluster_size");
        string? compat = opts.Take("compat");
        string? prealloc = opts.Take("preallocation");
        string? lazy = opts.Take("lazy_refcounts");
        string? refcountBits = opts.Take("refcount_bits");
        string? extendedL2 = opts.Take("extended_l2");
        string? compression = opts.Take("compression_type");
        if (size is null && (backing is null || unsafeBacking)) throw new CommandException("Image creation needs a size parameter");
        // Values as qemu-img prints them: sizes and numbers as the signed 64-bit value parsed, the rest as written.
        long? refBits = refcountBits is null ? null : ParseNumber("refcount_bits", refcountBits);
        announce?.Invoke($"{head} cluster_size={clusterSize ?? 65536} extended_l2={extendedL2 ?? "off"}"
            + (prealloc != null ? $" preallocation={prealloc}" : "") + $" compression_type={compression ?? "zlib"}"
            + SizePart(size) + (compat != null ? $" compat={compat}" : "") + backingPart
            + $" lazy_refcounts={lazy ?? "off"} refcount_bits={refBits ?? 16}");
        // QAPI's enumerations, in the order of its qcow2 creation options: version, backing format, preallocation,
        // compression type.
        int version = compat switch
        {
            null or "1.1" or "v3" => 3,
            "0.10" or "v2" => 2,
            var other => throw new CreateRefusedException($"Parameter 'version' does not accept value '{other}'"),
        };
        var parsedBackingFormat = ParseBackingFormat(backingFormat);
        var preallocation = prealloc switch
        {
            null or "off" => Formats.Qcow2.Qcow2Preallocation.Off,
            "metadata" => Formats.Qcow2.Qcow2Preallocation.Metadata,
            "falloc" => Formats.Qcow2.Qcow2Preallocation.Falloc,
            "full" => Formats.Qcow2.Qcow2Preallocation.Full,
            var other => throw new CreateRefusedException($"Parameter 'preallocation' does not accept value '{other}'"),
        };
        var compressionType = compression switch
        {
            null or "zlib" => Formats.Qcow2.Qcow2CompressionType.Zlib,
            "zstd" => Formats.Qcow2.Qcow2CompressionType.Zstd,
            var other => throw new CreateRefusedException($"Parameter 'compression-type' does not accept value '{other}'"),
        };
        var options = new Qcow2CreateOptions
        {
            Size = size,
            BackingFile = backing,
            BackingFormat = parsedBackingFormat,
            BackingCheck = unsafeBacking ? BackingFileCheck.None : BackingFileCheck.Open,
            // A cluster size beyond int is refused by the layout with qemu-img's words, as any other invalid one.
            ClusterSize = clusterSize is not { } c ? null : Int(c),
            Version = version,
            // Beyond int (a negative number wraps to a huge one, as qemu-img reads it) is no power of two up to 64.
            RefcountBits = refBits is not { } r ? 16 : r is >= 0 and <= 64 ? (int)r : -1,
            LazyRefcounts = lazy != null && ParseOnOff("lazy_refcounts", lazy),
            ExtendedL2 = extendedL2 != null && ParseOnOff("extended_l2", extendedL2),
            Preallocation = preallocation,
            CompressionType = compressionType,
        };
        try
        {
            await ImageCreation.CreateFileAsync(path, ImageFormat.Qcow2, options, ct);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException && e is not CreateRefusedException)
        {
            throw new CreateRefusedException(CliRunner.Describe(e), e);
        }
    }

    /// <summary>qemu-img's booleans: on, off, yes, no, true, false, y, n (lower case only, as it takes them).</summary>
    private static bool ParseOnOff(string key, string value) => value switch
    {
        "on" or "yes" or "true" or "y" => true,
        "off" or "no" or "false" or "n" => false,
        _ => throw new CommandException($"Parameter '{key}' expects 'on' or 'off'"),
    };

    /// <summary>
    /// qemu-img's numbers (as C's strtoull with base 0): leading blanks, an optional sign, decimal, 0x hex or 0 octal;
    /// a minus wraps around 2^64; returned as the signed 64-bit value qemu-img prints.
    /// </summary>
    private static long ParseNumber(string key, string value)
    {
        var s = value.AsSpan().TrimStart(" \t\n\v\f\r");
        bool negative = false;
        if (s.Length > 0 && s[0] is '+' or '-') { negative = s[0] == '-'; s = s[1..]; }
        int radix = 10;
        if (s.Length > 1 && s[0] == '0' && s[1] is 'x' or 'X' && s.Length > 2 && Uri.IsHexDigit(s[2])) { radix = 16; s = s[2..]; }
        else if (s.Length > 1 && s[0] == '0') { radix = 8; s = s[1..]; }
        if (s.IsEmpty) throw new CommandException($"Parameter '{key}' expects a number");
        UInt128 n = 0;
        foreach (char ch in s)
        {
            int digit = char.IsAsciiDigit(ch) ? ch - '0' : char.IsAsciiHexDigit(ch) ? char.ToLowerInvariant(ch) - 'a' + 10 : 99;
            if (digit >= radix) throw new CommandException($"Parameter '{key}' expects a number");
            n = n * (uint)radix + (uint)digit;
            if (n > ulong.MaxValue) throw new CommandException($"Value '{value}' is too large for parameter '{key}'");
        }
        ulong u = (ulong)n;
        return (long)(negative ? 0 - u : u);
    }
}

/// <summary>
/// The format refused to create the image for an option's value or combination, after the Formatting line: create
/// words it <c>FILE: reason</c> (as any argument error), convert <c>FILE: error while converting FMT: reason</c>, as
/// qemu-img does. Errors found while the option list is read (a type, an unknown key) are not this: qemu-img names no
/// file for them in convert.
/// </summary>
internal sealed class CreateRefusedException(string message, Exception? inner = null) : ArgumentException(message, inner);
