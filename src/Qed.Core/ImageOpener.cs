using System.Buffers.Binary;
using Qed.Formats.Qed;
using Qed.Formats.Qcow2;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed;

/// <summary>Opens image files: probes the format, opens the backing chain, refuses loops and over-deep chains.</summary>
internal static class ImageOpener
{
    /// <summary>Deeper chains are refused rather than followed (each layer holds a file open).</summary>
    public const int MaxChainDepth = 256;
    private const uint Qcow2Magic = 0x514649fb; // "QFI\xfb", big-endian

    public static Task<DiskImage> OpenAsync(string path, ImageOpenOptions options, CancellationToken ct)
    {
        if (options.ForceShare && !options.ReadOnly)
            throw new ArgumentException("force-share=on can only be used with read-only images", nameof(options));
        return OpenLayerAsync(path, options, [], ct);
    }

    /// <summary>
    /// Opens a backing file read-only for create; the error names the image that wants it. Shared as qemu-img create
    /// opens it, so that an overlay can be made over an image in use.
    /// </summary>
    public static Task<DiskImage> OpenBackingAsync(string path, string? format, string forImage, CancellationToken ct) =>
        OpenBackingLayerAsync(path, format, forImage, [], ct, new ImageOpenOptions { ReadOnly = true, ForceShare = true });

    /// <remarks>
    /// <paramref name="format"/> is the name the image records (a qcow2 header extension may name any format): one that
    /// is no <see cref="ImageFormat"/> is refused once the file is found, as QEMU reports a missing file first.
    /// </remarks>
    private static async Task<DiskImage> OpenBackingLayerAsync(string path, string? format, string forImage, List<string> chain, CancellationToken ct,
        ImageOpenOptions parent)
    {
        try
        {
            string? writable = parent.WritableBacking;
            bool write = writable != null && Canonical(writable) == Canonical(ImageName.HostPathOf(path));
            bool known = ImageFormatNames.TryParse(format, out var named);
            var options = new ImageOpenOptions
            {
                Format = known ? named : null, ReadOnly = !write, WritableBacking = write ? null : writable, InlineReadLimit = parent.InlineReadLimit,
                Locking = parent.Locking, ForceShare = parent.ForceShare && !write,
            };
            return await OpenLayerAsync(path, options, chain, ct, unknownFormat: known ? null : format).ConfigureAwait(false);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open backing file: Could not open '{path}': No such file or directory", path, e);
        }
        // qemu-img's words: "Could not open 'TOP': Could not open backing file: REASON".
        catch (ImageLockedException e)
        {
            throw new ImageLockedException(e.FileName, $"Could not open backing file: {e.Reason}", forImage);
        }
        catch (UnsupportedFileException e)
        {
            throw new UnsupportedFileException(e.FilePath, $"Could not open backing file: {e.Reason}", forImage);
        }
    }

    private static async Task<DiskImage> OpenLayerAsync(string path, ImageOpenOptions options, List<string> chain, CancellationToken ct,
        string? unknownFormat = null)
    {
        string canonical = Canonical(path);
        if (chain.Contains(canonical))
            throw new ImageFormatException($"Backing file '{path}' creates an infinite loop.", path, ImageFormatException.BackingLoopField, null);
        if (chain.Count >= MaxChainDepth)
            throw new ImageFormatException($"Backing chain of '{path}' is deeper than {MaxChainDepth} layers", path, "backing_filename", null);
        chain.Add(canonical);

        IBlockStorage file;
        string? named;
        try
        {
            var locking = !options.Locking ? FileLockMode.None : options.ForceShare ? FileLockMode.ForceShare : FileLockMode.Default;
            (file, named) = await ImageNameOpener.OpenAsync(path, options, locking, ct).ConfigureAwait(false);
            file.SetInlineReadLimit(options.InlineReadLimit);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory", path, e);
        }
        try
        {
            if (unknownFormat != null) throw UnknownFormat(unknownFormat);
            ImageFormat? fromName = named is null ? null : ImageFormatNames.TryParse(named, out var f) ? f : throw UnknownFormat(named);
            var format = options.Format ?? fromName ?? await ProbeAsync(file, ct).ConfigureAwait(false);
            return await OpenFormatAsync(file, path, format, probed: options.Format is null && fromName is null, options, chain, ct).ConfigureAwait(false);
        }
        // The format layers do not know the file's name: it goes on their errors here. A corrupt backing file's error
        // got the backing file's name in its own open, further in, and keeps it (the filter never catches).
        catch (ImageFormatException e) when (e.AttachFileName(file.Name))
        {
            throw;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an image just written onto <paramref name="file"/> as <paramref name="options"/> say (the format is
    /// named); its backing chain resolves from <paramref name="path"/>. The caller disposes the file if this throws.
    /// </summary>
    public static Task<DiskImage> OpenCreatedAsync(IBlockStorage file, string path, ImageOpenOptions options, CancellationToken ct)
    {
        file.SetInlineReadLimit(options.InlineReadLimit);
        return OpenFormatAsync(file, path, options.Format!.Value, probed: false, options, [Canonical(path)], ct);
    }

    /// <summary>
    /// A public backing opener (taking an <see cref="ImageFormat"/>) as the formats call one (with the name the image
    /// records): a name that is no <see cref="ImageFormat"/> is refused.
    /// </summary>
    public static Func<string, string?, CancellationToken, Task<DiskImage>>? ByName(Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? open) =>
        open is null ? null : (name, format, ct) =>
            format is null ? open(name, null, ct) : ImageFormatNames.TryParse(format, out var f) ? open(name, f, ct) : throw UnknownFormat(format);

    private static NotSupportedException UnknownFormat(string name) => new($"Unknown image format '{name}' (known: qed, raw, qcow2)");

    /// <summary>Opens the format on the layer's storage; the caller disposes the storage if this throws.</summary>
    private static async Task<DiskImage> OpenFormatAsync(IBlockStorage file, string path, ImageFormat format, bool probed, ImageOpenOptions options,
        List<string> chain, CancellationToken ct)
    {
        switch (format)
        {
            case ImageFormat.Qed:
                return await QedImage.OpenCoreAsync(file, options,
                    (name, backingFormat, token) => OpenBackingLayerAsync(QedImage.ResolveBackingPath(path, name), backingFormat, path, chain, token, options),
                    Formats.Qed.QedTuning.Default, ct).ConfigureAwait(false);
            case ImageFormat.Raw:
                return new RawImage(file, options.ReadOnly, probed);
            case ImageFormat.Qcow2:
                return await Qcow2Image.OpenCoreAsync(file, options,
                    (name, backingFormat, token) => OpenBackingLayerAsync(Qcow2Image.ResolveBackingPath(path, name), backingFormat, path, chain, token, options),
                    ct).ConfigureAwait(false);
            default:
                throw new ArgumentOutOfRangeException(nameof(options), format, "Not an ImageFormat value.");
        }
    }

    /// <summary>Guesses a format from the first bytes, as QEMU does: QED and qcow2 by magic, anything else is raw.</summary>
    internal static async Task<ImageFormat> ProbeAsync(IBlockStorage file, CancellationToken ct)
    {
        if (file.Length < QedHeader.Size) return ImageFormat.Raw;
        var head = new byte[8];
        await file.ReadAsync(0, head, ct).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) == QedHeader.MagicValue) return ImageFormat.Qed;
        if (BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Magic) return ImageFormat.Qcow2;
        return ImageFormat.Raw;
    }

    /// <summary>Probes the file at <paramref name="path"/> (opened read-only, shared as a probe is: it takes no lock).</summary>
    internal static async Task<ImageFormat> ProbeAsync(string path, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        FileStorage file;
        try
        {
            file = FileStorage.Open(ImageName.HostPathOf(path), writable: false, locking: FileLockMode.None);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory", path, e);
        }
        using (file)
            return await ProbeAsync(file, ct).ConfigureAwait(false);
    }

    internal static string Canonical(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            return full;
        }
    }
}
