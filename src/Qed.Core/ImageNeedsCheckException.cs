namespace Qed;

/// <summary>
/// A write was refused because the image must be checked and repaired first: earlier in this session it was found
/// corrupt (an <see cref="ImageFormatException"/>, the <see cref="Exception.InnerException"/>) or a metadata write
/// failed, so memory and disk may disagree, and nothing more is written to it until it is repaired (with
/// <c>ImageFile.CheckAsync</c> and <see cref="Check.CheckRepair.All"/>, on a closed image).
/// </summary>
/// <remarks>
/// Distinct from a read-only image, whose writes fail with <see cref="InvalidOperationException"/>: front ends that
/// report an errno say EIO for this one (an I/O error, as QEMU reports a corrupt image) and EPERM for read-only.
/// <see cref="ImageFormatException.Field"/> and <see cref="ImageFormatException.FileOffset"/> are those of the
/// corruption found first, when that is what caused the refusal.
/// </remarks>
public class ImageNeedsCheckException : ImageFormatException
{
    /// <summary>Creates the exception with a default message.</summary>
    public ImageNeedsCheckException()
        : base("The image must be checked and repaired before it is written to.")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    public ImageNeedsCheckException(string? message)
        : base(message)
    {
    }

    /// <summary>Creates the exception; <paramref name="innerException"/> is the failure found first.</summary>
    public ImageNeedsCheckException(string? message, Exception? innerException)
        : this(message, (innerException as ImageFormatException)?.FileName, innerException)
    {
    }

    /// <summary>Creates the exception for the image file <paramref name="fileName"/>; <paramref name="innerException"/> is the failure found first.</summary>
    public ImageNeedsCheckException(string? message, string? fileName, Exception? innerException)
        : base(message, fileName, (innerException as ImageFormatException)?.Field, (innerException as ImageFormatException)?.FileOffset, innerException)
    {
    }
}
