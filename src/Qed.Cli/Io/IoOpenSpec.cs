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
        try
        {
            return ImageOptsArgs.Simplify(ImageName.FromOptions(options, format));
        }
        catch (ArgumentException e)
        {
            throw new CommandException(e.Message, e);
        }
    }
}
