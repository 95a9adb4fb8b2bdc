using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.Storage;

namespace Qed;

/// <remarks>
/// <para>Thread-safety: every instance member is safe for any number of concurrent callers (the NBD server serves many
/// clients from one image); requests that overlap are ordered as the format requires. <see cref="DiskImageStream"/>
/// adds a position, and with it the usual rule of a <see cref="Stream"/>: one caller at a time per stream.</para>
/// <para>Disposal flushes the image, marks it clean and closes its file and backing chain. Dispose once every request
/// has completed (a server stops first, as <c>NbdServer.StopAsync</c> does): disposal does not wait for requests in
/// flight, which may then fail (typically with <see cref="ObjectDisposedException"/>) and whose writes may not be
/// flushed. Disposing twice does nothing.</para>
/// </remarks>
public abstract partial class DiskImage
{
    /// <summary>
    /// Opens the image held in a caller's <paramref name="stream"/> (a <see cref="MemoryStream"/>, a
    /// <see cref="FileStream"/>, a stream of another library): the format is probed unless
    /// <see cref="ImageOpenOptions.Format"/> gives it. The image is read-only when the stream cannot write
    /// (<see cref="Stream.CanWrite"/> false) or <see cref="ImageOpenOptions.ReadOnly"/> is set.
    /// </summary>
    /// <remarks>
    /// The stream's position is the image's business until it is disposed: calls on the image are serialised on the
    /// stream (a stream has one position), so they do not run in parallel as they do on a file opened by path. No
    /// image lock is taken (<see cref="ImageOpenOptions.Locking"/> does not apply): whoever owns the stream decides
    /// who else may write it. <see cref="ImageOpenOptions.Cache"/> does not apply either; a flush of the image
    /// flushes the stream (a <see cref="FileStream"/> through to the disk). An image with a backing file is refused
    /// (a stream has no folder to find its backing file in) unless <see cref="ImageOpenOptions.NoBacking"/> is set,
    /// when what the backing file would have supplied reads as zeroes. The image's <see cref="Name"/>, which errors give
    /// as <see cref="ImageFormatException.FileName"/>, is the file's path for a <see cref="FileStream"/>, else the
    /// stream's type in angle brackets (<c>&lt;MemoryStream&gt;</c>).
    /// </remarks>
    /// <param name="stream">A readable, seekable stream holding the image from its start at offset 0.</param>
    /// <param name="options">How to open it; null for the defaults.</param>
    /// <param name="leaveOpen">False (the default): disposing the image disposes the stream, as
    /// <c>new GZipStream(stream, mode)</c> does. True: the stream stays open for the caller. If the open fails, the
    /// stream is left open either way.</param>
    /// <param name="cancellationToken">Cancels the open.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="NotSupportedException">The stream cannot seek or cannot be read; the image has a backing file;
    /// or the format needs what a stream lacks.</exception>
    /// <exception cref="ImageFormatException">The image is malformed.</exception>
    public static async Task<DiskImage> OpenAsync(Stream stream, ImageOpenOptions? options = null, bool leaveOpen = false,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        options ??= new ImageOpenOptions();
        if (options.ForceShare && !options.ReadOnly)
            throw new ArgumentException("force-share=on can only be used with read-only images", nameof(options));
        var storage = new StreamStorage(stream, canWrite: !options.ReadOnly, leaveOpen);
        options = options with { ReadOnly = !storage.CanWrite, WritableBacking = null };
        try
        {
            var format = options.Format ?? await ImageOpener.ProbeAsync(storage, cancellationToken).ConfigureAwait(false);
            return format switch
            {
                ImageFormat.Qed => await QedImage.OpenAsync(storage, options, RefuseBacking, cancellationToken).ConfigureAwait(false),
                ImageFormat.Qcow2 => await Qcow2Image.OpenAsync(storage, options, RefuseBacking, cancellationToken).ConfigureAwait(false),
                ImageFormat.Raw => new RawImage(storage, options.ReadOnly, probed: options.Format is null),
                _ => throw new ArgumentOutOfRangeException(nameof(options), format, "ImageOpenOptions.Format is not an ImageFormat value"),
            };
        }
        catch (ImageFormatException e) when (e.AttachFileName(storage.Name))
        {
            throw; // never reached: the filter only names the file
        }
        catch
        {
            storage.LeaveOpen();
            await storage.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The backing opener of an image over a stream: there is none to open.</summary>
    private static Task<DiskImage> RefuseBacking(string backingName, ImageFormat? format, CancellationToken cancellationToken) =>
        throw new NotSupportedException(
            $"The image in the stream has the backing file '{backingName}', which cannot be opened: an image over a stream has no folder to find it in. Open the image by path, or set ImageOpenOptions.NoBacking to read it without its backing file.");
}
