namespace Qed.Formats.Raw;

/// <summary>
/// A write refused on a raw image whose format was probed (<see cref="RawImage.IsProbed"/>): it would have left a QED
/// or qcow2 header in block 0, so the next probing open would take the file for that format. An
/// <see cref="InvalidOperationException"/>, so servers report it as a refused operation (NBD: EPERM, as qemu-nbd).
/// </summary>
public sealed class ProbedRawWriteException : InvalidOperationException
{
    /// <summary>Describes the refused write.</summary>
    /// <param name="image">The image's name.</param>
    /// <param name="format">The format block 0 would have probed as.</param>
    public ProbedRawWriteException(string image, string format)
        : base($"Operation not permitted: the write would put a {format} header into block 0 of '{image}', a raw image " +
            $"whose format was probed (opened again without a format it would be taken for {format}); name the format raw to write it")
    {
        Image = image;
        ProbedFormat = format;
    }

    /// <summary>The image's name.</summary>
    public string Image { get; }

    /// <summary>The format block 0 would have probed as.</summary>
    public string ProbedFormat { get; }
}
