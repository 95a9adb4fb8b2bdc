namespace Qed.Cli.Io;

/// <summary>
/// What opening an image takes in qemu-io: a file name or an option string, format, mode and cache; with
/// <paramref name="Snapshot"/> (-s) writes go to a temporary overlay that is deleted at close; <paramref name="ForceShare"/>
/// is -U (read-only opens beside a writer).
/// </summary>
internal sealed record IoOpenSpec(string Target, string? Format, bool ReadOnly, Storage.CacheMode Cache, bool ImageOpts, bool Snapshot = false, bool ForceShare = false)
{
    /// <summary>qemu-io's cache modes (-t, --cache); null when <paramref name="name"/> is not one.</summary>
    public static Storage.CacheMode? ParseCache(string name) => name switch
    {
        "writeback" => Storage.CacheMode.WriteBack,
        "writethrough" => Storage.CacheMode.WriteThrough,
        "none" or "off" => Storage.CacheMode.None,
        "directsync" => Storage.CacheMode.DirectSync,
        "unsafe" => Storage.CacheMode.Unsafe,
        _ => null,
    };

    /// <summary>
    /// The file and format an option string (<c>driver=qed,file.filename=F</c>, as --image-opts and open -o take)
    /// names; ",," stands for a comma. Throws <see cref="CommandException"/> naming an option it cannot honour.
    /// </summary>
    public static (string Path, string? Format) FromOptions(string options, string? format)
    {
        string? path = null;
        foreach (string pair in SplitOptions(options))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            string key = eq < 0 ? pair : pair[..eq], value = eq < 0 ? "" : pair[(eq + 1)..];
            switch (key)
            {
                case "driver": format = value; break;
                case "file.filename" or "filename": path = value; break;
                case "file.driver" when value == "file": break;
                case "file" when eq > 0: path = value; break;
                case "read-only" or "cache.direct" or "cache.no-flush" or "discard" or "file.locking" or "force-share": break;
                default:
                    throw new CommandException($"Block format '{format ?? "qed"}' does not support the option '{key}'");
            }
        }
        return (path ?? throw new CommandException("The 'file' block driver requires a file name"), format);
    }

    private static IEnumerable<string> SplitOptions(string options)
    {
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < options.Length; i++)
        {
            if (options[i] == ',' && i + 1 < options.Length && options[i + 1] == ',') { current.Append(','); i++; }
            else if (options[i] == ',') { yield return current.ToString(); current.Clear(); }
            else current.Append(options[i]);
        }
        if (current.Length > 0) yield return current.ToString();
    }
}
