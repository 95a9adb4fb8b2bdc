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

    private static async Task<DiskImage> OpenBackingLayerAsync(string path, string? format, string forImage, List<string> chain, CancellationToken ct,
        ImageOpenOptions parent)
    {
        try
        {
            string? writable = parent.WritableBacking;
            bool write = writable != null && Canonical(writable) == Canonical(ImageName.HostPathOf(path));
            var options = new ImageOpenOptions
            {
                Format = format, ReadOnly = !write, WritableBacking = write ? null : writable, InlineReadLimit = parent.InlineReadLimit,
                Locking = parent.Locking, ForceShare = parent.ForceShare && !write,
            };
            return await OpenLayerAsync(path, options, chain, ct).ConfigureAwait(false);
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

    private static async Task<DiskImage> OpenLayerAsync(string path, ImageOpenOptions options, List<string> chain, CancellationToken ct)
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
            string format = options.Format ?? named ?? await ProbeAsync(file, ct).ConfigureAwait(false);
            switch (format)
            {
                case "qed":
                    return await QedImage.OpenAsync(file, options,
                        (name, backingFormat, token) => OpenBackingLayerAsync(QedImage.ResolveBackingPath(path, name), backingFormat, path, chain, token, options),
                        ct).ConfigureAwait(false);
                case "raw":
                    return new RawImage(file, options.ReadOnly, probed: options.Format is null && named is null);
                case "qcow2":
                    return await Qcow2Image.OpenAsync(file, options,
                        (name, backingFormat, token) => OpenBackingLayerAsync(Qcow2Image.ResolveBackingPath(path, name), backingFormat, path, chain, token, options),
                        ct).ConfigureAwait(false);
                default:
                    throw new NotSupportedException($"Unknown image format '{format}' (known: qed, raw, qcow2)");
            }
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

    /// <summary>Guesses a format from the first bytes, as QEMU does: QED and qcow2 by magic, anything else is raw.</summary>
    internal static async Task<string> ProbeAsync(IBlockStorage file, CancellationToken ct)
    {
        if (file.Length < QedHeader.Size) return "raw";
        var head = new byte[8];
        await file.ReadAsync(0, head, ct).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) == QedHeader.MagicValue) return "qed";
        if (BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Magic) return "qcow2";
        return "raw";
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
