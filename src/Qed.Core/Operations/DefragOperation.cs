using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// Defragments a QED image file (<c>qed defrag</c>): the L2 tables follow the L1 table, the data clusters follow them in
/// guest order, and the file is cut after the last referenced cluster. See <see cref="QedImage.DefragmentAsync"/>,
/// which does the same on an image that is in use.
/// </summary>
internal static class DefragOperation
{
    /// <summary>Opens <paramref name="path"/> read-write with its backing chain and defragments it.</summary>
    /// <param name="path">The image file.</param>
    /// <param name="format">"qed" or null to probe; other formats are refused.</param>
    /// <param name="progress">Receives bytes of clusters in place out of the bytes of clusters referenced.</param>
    /// <param name="cancellationToken">Stops between batches, leaving a consistent image with every byte.</param>
    /// <exception cref="NotSupportedException">The image is not QED.</exception>
    /// <exception cref="ImageFormatException">The image is malformed or corrupt; nothing is changed.</exception>
    public static async Task<DefragResult> DefragmentAsync(string path, string? format, IProgress<ImageProgress>? progress,
        CancellationToken cancellationToken = default)
    {
        if (format is not null and not "qed")
            throw new NotSupportedException($"defrag works on QED images, not {format}");
        long before = new FileInfo(path).Length;
        await using var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { Format = ImageFormatNames.FromName(format) }, cancellationToken).ConfigureAwait(false);
        if (image is not QedImage qed)
            throw new NotSupportedException($"defrag works on QED images; '{path}' is {image.Format.Name()}");
        await qed.DefragmentAsync(progress, cancellationToken).ConfigureAwait(false);
        await qed.DisposeAsync().ConfigureAwait(false);
        return new DefragResult(before, new FileInfo(path).Length);
    }
}
