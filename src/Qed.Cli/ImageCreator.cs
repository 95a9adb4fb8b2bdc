namespace Qed.Cli;

/// <summary>
/// Creating an image of any format from qemu-img's options: the one place that knows target formats, shared by
/// <c>create</c> and <c>convert</c>. Each <c>-o</c> option is taken by the format that understands it; leftovers
/// are an error naming them.
/// </summary>
internal static class ImageCreator
{
    public static async Task CreateAsync(string format, string path, long? size, OptionList opts, string? backing, string? backingFormat,
        bool unsafeBacking, CancellationToken ct)
    {
        switch (format)
        {
            case "qed":
                var qed = new QedCreateOptions
                {
                    Size = size,
                    BackingFile = backing,
                    BackingFormat = backingFormat,
                    Unsafe = unsafeBacking,
                    ClusterSize = (uint)(opts.TakeSize("cluster_size") ?? 65536),
                    TableSize = (uint)(opts.TakeSize("table_size") ?? 4),
                };
                opts.ThrowIfAnyLeft("qed");
                await QedImage.CreateAsync(path, qed, ct);
                break;
            case "qcow2":
                var qcow2 = new Formats.Qcow2.Qcow2CreateOptions
                {
                    Size = size,
                    BackingFile = backing,
                    BackingFormat = backingFormat,
                    Unsafe = unsafeBacking,
                    ClusterSize = (int)(opts.TakeSize("cluster_size") ?? 65536),
                    Version = opts.Take("compat") switch
                    {
                        null or "1.1" or "v3" => 3,
                        "0.10" or "v2" => 2,
                        var other => throw new CommandException($"Invalid compatibility level: '{other}' (use 0.10 or 1.1)"),
                    },
                };
                if (opts.Take("preallocation") is { } prealloc && prealloc != "off")
                    throw new CommandException($"Unsupported preallocation mode '{prealloc}' (only off)");
                opts.ThrowIfAnyLeft("qcow2");
                await Formats.Qcow2.Qcow2Image.CreateAsync(path, qcow2, ct);
                break;
            case "raw":
                if (backing != null) throw new CommandException("The raw format does not support backing files");
                opts.ThrowIfAnyLeft("raw");
                if (size is null) throw new CommandException("Image creation needs a size parameter");
                await Formats.RawImage.CreateAsync(path, size.Value, ct);
                break;
            default:
                throw new CommandException($"Unknown or unsupported format '{format}' (known: qed, qcow2, raw)");
        }
    }
}
