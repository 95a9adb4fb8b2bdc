namespace Qed;

/// <summary>
/// An image is in use by another opener whose locks conflict (QEMU's tools, or another open in this or another
/// process). The message is qemu-img's; <see cref="Hint"/> is the line qemu-img prints after it.
/// </summary>
/// <remarks>An <see cref="IOException"/>, as the BCL reports a file another process holds (a sharing violation).</remarks>
public sealed class ImageLockedException : IOException
{
    /// <summary>Creates the exception for <paramref name="lockedFile"/>, opened as <paramref name="openedAs"/>.</summary>
    public ImageLockedException(string lockedFile, string reason, string? openedAs = null)
        : base($"Could not open '{openedAs ?? lockedFile}': {reason}")
    {
        FileName = lockedFile;
        Reason = reason;
    }

    /// <summary>The file whose locks conflict (a backing file, when that is the one in use), as it was opened.</summary>
    public string FileName { get; }

    /// <summary>The failure without the image name: <c>Failed to get "write" lock</c>, possibly behind <c>Could not open backing file: </c>.</summary>
    public string Reason { get; }

    /// <summary>qemu-img's second line: <c>Is another process using the image [FILE]?</c></summary>
    public string Hint => $"Is another process using the image [{FileName}]?";
}
