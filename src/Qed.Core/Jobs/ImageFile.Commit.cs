using Qed.Formats.Qed;
using Qed.Operations;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Writes what the image at <paramref name="path"/> (and the layers between it and the base) holds into its backing
    /// file or <see cref="CommitOptions.Base"/> (qemu-img commit), flushes the base, then empties a QED image so it reads
    /// through to the base (unless <see cref="CommitOptions.KeepTop"/>). The base grows to the image's size if smaller.
    /// </summary>
    /// <param name="path">The image file (the top of the chain).</param>
    /// <param name="options">The base, whether to keep the image's content, the format; null to commit into the backing file.</param>
    /// <param name="progress">Guest bytes of the image dealt with (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy: the image still reads as before, the base holds part of its data.</param>
    /// <returns>The path of the base that received the data.</returns>
    /// <exception cref="ArgumentException">The image has no backing file, or the base is not in its chain.</exception>
    /// <exception cref="CommitCopyException">Reading the chain or writing the base failed (the image is unchanged).</exception>
    public static Task<string> CommitAsync(string path, CommitOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new CommitOptions();
        CheckFormat(options.Format, nameof(options));
        if (options.Parallelism <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Parallelism, "CommitOptions.Parallelism must be positive");
        return CommitOperation.CommitAsync(path, options.Format?.Name(), options, progress, cancellationToken);
    }

    /// <summary>
    /// Defragments the QED image file at <paramref name="path"/>: the L2 tables follow the L1 table, the data clusters
    /// follow them in guest order, and the file is cut after the last referenced cluster, so reading the image in guest
    /// order reads the file sequentially. (<see cref="QedImage.DefragmentAsync"/> does the same on an open image.)
    /// </summary>
    /// <param name="path">The QED image file; opened for writing with its backing chain.</param>
    /// <param name="progress">Bytes of the clusters placed out of the bytes of the clusters referenced, after every batch
    /// (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops between batches, leaving a consistent image with every byte.</param>
    /// <returns>The file's length before and after.</returns>
    /// <exception cref="NotSupportedException">The image is not QED.</exception>
    /// <exception cref="ImageFormatException">The image is malformed or corrupt; nothing is changed.</exception>
    public static Task<DefragResult> DefragmentAsync(string path, IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        return DefragOperation.DefragmentAsync(path, null, progress, cancellationToken);
    }

    /// <summary>
    /// Streams into the QED image at <paramref name="path"/> what its backing chain supplies (or the part of the chain
    /// above <see cref="StreamOptions.Base"/>), then drops the backing file (or makes the base the backing file). A crash
    /// or a cancellation at any point leaves an image that reads the same and names its old backing file until the
    /// header is rewritten, as the very last step.
    /// </summary>
    /// <param name="path">The QED image file; opened for writing with its backing chain.</param>
    /// <param name="options">The base and the name to record for it; null to stream the whole chain.</param>
    /// <param name="progress">Guest bytes examined (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy; the image still reads the same and keeps its backing file.</param>
    /// <exception cref="NotSupportedException">The image is not QED, or has compat feature bits this library does not know.</exception>
    /// <exception cref="ArgumentException">The base is not in the chain, has another format than asked, or its name does
    /// not fit in the header; nothing is changed.</exception>
    public static async Task StreamAsync(string path, StreamOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckPath(path, nameof(path));
        options ??= new StreamOptions();
        CheckFormat(options.BaseFormat, nameof(options));
        await using var image = await DiskImage.OpenAsync(path, Writable(null), cancellationToken).ConfigureAwait(false);
        if (image is not QedImage qed)
            throw new NotSupportedException($"Cannot stream into '{path}': it is a {image.Format} image, and streaming works on QED images");
        await StreamOperation.RunAsync(qed, options, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Streams into an open, writable QED image, which stays in use meanwhile (it may be served): reads and writes go
    /// on throughout, and a write that reaches a cluster first is never overwritten with older chain data. Otherwise as
    /// <see cref="StreamAsync(string, StreamOptions?, IProgress{ImageProgress}?, CancellationToken)"/>.
    /// </summary>
    /// <param name="image">The open QED image.</param>
    /// <param name="options">The base and the name to record for it; null to stream the whole chain.</param>
    /// <param name="progress">Guest bytes examined (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the copy; the image still reads the same and keeps its backing file.</param>
    /// <exception cref="NotSupportedException">The image is not QED.</exception>
    /// <exception cref="InvalidOperationException">The image is open read-only.</exception>
    public static Task StreamAsync(DiskImage image, StreamOptions? options = null, IProgress<ImageProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        options ??= new StreamOptions();
        CheckFormat(options.BaseFormat, nameof(options));
        if (image is not QedImage qed)
            throw new NotSupportedException($"Cannot stream into '{image.Name}': it is a {image.Format} image, and streaming works on QED images");
        if (qed.IsReadOnly) throw new InvalidOperationException($"The image '{image.Name}' is open read-only: it cannot be streamed into");
        return StreamOperation.RunAsync(qed, options, progress, cancellationToken);
    }
}
