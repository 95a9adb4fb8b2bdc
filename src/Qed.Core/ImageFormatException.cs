namespace Qed;

/// <summary>
/// An image is malformed or uses something this library cannot read. The message is one sentence naming what is
/// wrong; <see cref="FileName"/>, <see cref="Field"/> and <see cref="FileOffset"/> say where, when known.
/// </summary>
/// <remarks>
/// System.Formats.Tar and System.IO.Compression report a malformed archive with <see cref="InvalidDataException"/>,
/// which is sealed; this type plays its part for images (derived from <see cref="Exception"/>, as
/// <c>System.Text.Json.JsonException</c> is) and adds where the fault lies. It is not an <see cref="IOException"/>:
/// the file was read, and what it holds is wrong. <see cref="FileName"/> is the file at fault: for a corrupt backing
/// file, the backing file, not the image opened on top of it.
/// </remarks>
public class ImageFormatException : Exception
{
    /// <summary>Creates the exception with a default message.</summary>
    public ImageFormatException()
        : base("The image is malformed.")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    public ImageFormatException(string? message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> and the failure behind it.</summary>
    public ImageFormatException(string? message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception naming the file, the field and its offset in the file (each null if unknown).</summary>
    public ImageFormatException(string? message, string? fileName, string? field, long? fileOffset, Exception? innerException = null)
        : base(message, innerException)
    {
        FileName = fileName;
        Field = field;
        FileOffset = fileOffset;
    }

    /// <summary>For the format layers, which often do not know the file's name: the boundary fills it in.</summary>
    internal ImageFormatException(string message, string? field = null, long? fileOffset = null, Exception? inner = null)
        : this(message, null, field, fileOffset, inner)
    {
    }

    /// <summary>The <see cref="Field"/> of a backing chain that loops (its message names the repeated file, as qemu-img's).</summary>
    public const string BackingLoopField = "backing_chain_loop";

    /// <summary>
    /// The image file at fault, as it was opened (for a corrupt backing file, the backing file's name); null if
    /// unknown. For an image opened over a stream it is the image's <see cref="DiskImage.Name"/>.
    /// </summary>
    public string? FileName { get; private set; }

    /// <summary>The header field or table entry at fault, e.g. <c>cluster_size</c> or <c>L2[3][17]</c>.</summary>
    public string? Field { get; }

    /// <summary>The byte offset in the image file of the value at fault.</summary>
    public long? FileOffset { get; }

    /// <summary>
    /// Sets <see cref="FileName"/> to <paramref name="fileName"/> unless it is set already (the innermost layer, the one
    /// that knows the file, wins). Always returns false, so that it can run in an exception filter,
    /// <c>catch (ImageFormatException e) when (e.AttachFileName(name))</c>: the exception is never caught, and goes on
    /// with its own stack trace and inner exception.
    /// </summary>
    internal bool AttachFileName(string? fileName)
    {
        if (FileName is null && !string.IsNullOrEmpty(fileName)) FileName = fileName;
        return false;
    }
}
