using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed;

/// <summary>
/// Creating an image of any format: the options checked against the format, the size from a backing file, and no file
/// left behind on failure. <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/>
/// and the CLI's create both come here.
/// </summary>
internal static class ImageCreation
{
    /// <summary>Writes a planned image onto storage: everything was validated when the plan was made.</summary>
    public delegate Task Writer(IBlockStorage storage, CancellationToken cancellationToken);

    /// <summary>
    /// Creates the image file and leaves it closed (the CLI's create: the file is then exactly what qemu-img writes).
    /// Validated, and the backing file opened where the options say, before the file is touched.
    /// </summary>
    public static async Task CreateFileAsync(string path, ImageFormat format, ImageCreateOptions options, CancellationToken ct)
    {
        var typed = ForFormat(format, options);
        var write = await PlanAsync(path, format, typed, ct).ConfigureAwait(false);
        await WriteNewFileAsync(path, write, ct).ConfigureAwait(false);
    }

    /// <summary>Creates the image file and returns it open (see <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/>).</summary>
    public static Task<DiskImage> CreateAsync(string path, ImageFormat format, ImageCreateOptions options, CancellationToken ct) =>
        CreateAsync(path, format, options, onlyNew: false, ct);

    /// <summary>
    /// As <see cref="CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/>; with
    /// <paramref name="onlyNew"/>, a name that exists by the time the file is opened is refused (O_EXCL), never written over.
    /// </summary>
    public static async Task<DiskImage> CreateAsync(string path, ImageFormat format, ImageCreateOptions options, bool onlyNew, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var typed = ForFormat(format, options);
        var write = await PlanAsync(path, format, typed, ct).ConfigureAwait(false);
        var open = OpenOptions(format, typed);
        string host = ImageName.HostPathOf(path); // file:NAME creates NAME
        var file = FileStorage.Create(host, FileLockMode.Default, onlyNew);
        try
        {
            await write(file, ct).ConfigureAwait(false);
            // The creator's locks share "write" with other openers; an open image's (qemu-img's read-write ones) do not.
            // Taken on the same handle, so no other opener can come between the creation and the open.
            file.RelockAsWriter();
            return await ImageOpener.OpenCreatedAsync(file, path, open, ct).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            if (file.CreatedFile) FileStorage.TryDelete(host);
            throw;
        }
    }

    /// <summary>Writes a new image onto <paramref name="storage"/> and returns it open (see <see cref="DiskImage.CreateAsync(IBlockStorage, ImageFormat, ImageCreateOptions, CancellationToken)"/>).</summary>
    public static async Task<DiskImage> CreateAsync(IBlockStorage storage, ImageFormat format, ImageCreateOptions options, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(storage);
        var typed = ForFormat(format, options);
        if (!storage.CanWrite) throw new ArgumentException($"The storage '{storage.Name}' is read-only: no image can be created on it", nameof(storage));
        // The storage's name stands for the image's path: a relative backing file resolves from its folder.
        var write = await PlanAsync(storage.Name, format, typed, ct).ConfigureAwait(false);
        await write(storage, ct).ConfigureAwait(false);
        return await ImageOpener.OpenCreatedAsync(storage, storage.Name, OpenOptions(format, typed), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// How a created image is opened: read-write over its chain; but with an unchecked backing file, which may not be
    /// there, without its chain and read-only, as writes without the backing data would hide it where they land.
    /// </summary>
    private static ImageOpenOptions OpenOptions(ImageFormat format, ImageCreateOptions typed)
    {
        bool unchecked_ = typed.BackingFile != null && typed.BackingCheck == BackingFileCheck.None;
        return new ImageOpenOptions { Format = format, ReadOnly = unchecked_, NoBacking = unchecked_ };
    }

    /// <summary>
    /// The options as the format's own type: the common <see cref="ImageCreateOptions"/> become the format's with its
    /// defaults; another format's options are refused, naming both.
    /// </summary>
    /// <exception cref="ArgumentException">The options belong to another format, or raw is given what it has not.</exception>
    internal static ImageCreateOptions ForFormat(ImageFormat format, ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        bool common = options.GetType() == typeof(ImageCreateOptions);
        return format switch
        {
            ImageFormat.Qed => options as QedCreateOptions ?? (common ? new QedCreateOptions(options) : throw Mismatch(format, options, nameof(QedCreateOptions))),
            ImageFormat.Qcow2 => options as Qcow2CreateOptions ?? (common ? new Qcow2CreateOptions(options) : throw Mismatch(format, options, nameof(Qcow2CreateOptions))),
            ImageFormat.Raw => common ? CheckRaw(options) : throw Mismatch(format, options, null),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Not an ImageFormat value."),
        };
    }

    private static ArgumentException Mismatch(ImageFormat format, ImageCreateOptions options, string? own) =>
        new($"{options.GetType().Name} cannot create an ImageFormat.{format} image; pass {(own is null ? "" : own + " or ")}ImageCreateOptions",
            nameof(options));

    private static ImageCreateOptions CheckRaw(ImageCreateOptions options)
    {
        if (options.BackingFile != null) throw new ArgumentException("Backing file not supported for file format 'raw'", nameof(options));
        if (options.BackingFormat != null)
            throw new ArgumentException($"A raw image has no backing file, so no BackingFormat (it is {options.BackingFormat})", nameof(options));
        if (options.ClusterSize != null)
            throw new ArgumentException($"A raw image has no clusters: ClusterSize must be null (it is {options.ClusterSize})", nameof(options));
        return options;
    }

    /// <summary>Validates the options (opening the backing file where they say so) and returns what writes the image.</summary>
    private static async Task<Writer> PlanAsync(string path, ImageFormat format, ImageCreateOptions typed, CancellationToken ct) => typed switch
    {
        QedCreateOptions qed => await QedImageCreator.PlanAsync(path, qed, ct).ConfigureAwait(false),
        Qcow2CreateOptions qcow2 => await Qcow2Layout.PlanAsync(path, qcow2, ct).ConfigureAwait(false),
        _ when format == ImageFormat.Raw => RawImage.PlanCreate(RequireSize(typed)),
        _ => throw new ArgumentException($"ImageFormat.{format} is not created from {typed.GetType().Name}", nameof(typed)),
    };

    /// <summary>The size the options give; an error if none is.</summary>
    public static long RequireSize(ImageCreateOptions options) =>
        options.Size ?? throw new ArgumentException("Image creation needs a size parameter", nameof(options));

    /// <summary>
    /// The size to create: the options' if given, else the backing file's. The backing file is opened (so a missing one
    /// is an error naming it) unless <see cref="BackingFileCheck.None"/>, as qemu-img -u; that needs a size.
    /// </summary>
    public static async Task<long> ResolveSizeAsync(string path, ImageCreateOptions options, CancellationToken ct)
    {
        CheckBackingFormat(options);
        if (options.BackingFile is null || options.BackingCheck == BackingFileCheck.None) return RequireSize(options);
        string resolved = QedImage.ResolveBackingPath(path, options.BackingFile);
        await using var backing = await ImageOpener.OpenBackingAsync(resolved, options.BackingFormat?.Name(), path, ct).ConfigureAwait(false);
        return options.Size ?? backing.Size;
    }

    /// <summary>Refuses a backing format that is not an <see cref="ImageFormat"/> value (a cast integer).</summary>
    public static void CheckBackingFormat(ImageCreateOptions options)
    {
        if (options.BackingFormat is { } f && !Enum.IsDefined(f))
            throw new ArgumentOutOfRangeException(nameof(options), f, "BackingFormat is not an ImageFormat value.");
        if (!Enum.IsDefined(options.BackingCheck))
            throw new ArgumentOutOfRangeException(nameof(options), options.BackingCheck, "BackingCheck is not a BackingFileCheck value.");
    }

    /// <summary>
    /// Creates (or replaces) the file and writes it. The file is opened and locked first (a file in use, or one that
    /// is not a regular file, is refused untouched); if writing fails, the file is removed only if this call created
    /// it: a name that existed before (a file, a link) is never unlinked.
    /// </summary>
    public static async Task WriteNewFileAsync(string path, Writer write, CancellationToken ct)
    {
        path = ImageName.HostPathOf(path); // file:NAME creates NAME
        var file = FileStorage.Create(path);
        try
        {
            await using (file.ConfigureAwait(false))
                await write(file, ct).ConfigureAwait(false);
        }
        catch
        {
            if (file.CreatedFile) FileStorage.TryDelete(path);
            throw;
        }
    }
}
