namespace Qed;

/// <summary>
/// An image is malformed or uses something this library cannot read. The message is one sentence naming what is
/// wrong; <see cref="Field"/> and <see cref="FileOffset"/> say where, when known.
/// </summary>
public class ImageFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ImageFormatException(string message, string? field = null, long? fileOffset = null, Exception? inner = null)
        : base(message, inner)
    {
        Field = field;
        FileOffset = fileOffset;
    }

    /// <summary>The <see cref="Field"/> of a backing chain that loops (its message names the repeated file, as qemu-img's).</summary>
    public const string BackingLoopField = "backing_chain_loop";

    /// <summary>The header field or table entry at fault, e.g. <c>cluster_size</c> or <c>L2[3][17]</c>.</summary>
    public string? Field { get; }

    /// <summary>The byte offset in the image file of the value at fault.</summary>
    public long? FileOffset { get; }
}
