namespace Qed;

/// <summary>
/// A write was refused because earlier in this session the image was found corrupt (an
/// <see cref="ImageFormatException"/>) or a metadata write failed, so memory and disk may disagree: nothing more is
/// written to it until it is repaired with <c>qed check -r all</c>. <see cref="Exception.InnerException"/> is that
/// first failure. The image is not read-only, so callers that report an errno should say EIO, not EPERM. Derives
/// from <see cref="InvalidOperationException"/>, as which it was thrown before it had a type of its own.
/// </summary>
public class ImageNeedsCheckException : InvalidOperationException
{
    /// <summary>Creates the exception; <paramref name="cause"/> is the failure found first.</summary>
    public ImageNeedsCheckException(string message, Exception? cause = null)
        : base(message, cause)
    {
    }
}
