namespace Qed;

/// <summary>How <see cref="ImageFile.RebaseAsync(string, string?, RebaseOptions?, IProgress{ImageProgress}?, CancellationToken)"/> changes the backing file.</summary>
public sealed record RebaseOptions
{
    /// <summary>
    /// Only rewrite the backing file name (qemu-img rebase's <c>-u</c>), for when the new backing file has the same
    /// content as the old one (it was moved or renamed), or the old one is gone. Default: copy into the image every
    /// cluster it does not hold itself whose content differs between the old and new backing file first, so the image
    /// reads the same afterwards.
    /// </summary>
    public bool Unsafe { get; init; }

    /// <summary>The image's format (<see cref="ImageFormat.Qed"/> or <see cref="ImageFormat.Qcow2"/>); null to probe it.</summary>
    public ImageFormat? Format { get; init; }

    /// <summary>
    /// The new backing file's format, recorded in the image (raw as QED's BACKING_FORMAT_NO_PROBE); null leaves it to
    /// be probed at every open.
    /// </summary>
    public ImageFormat? BackingFormat { get; init; }

    /// <summary>
    /// Open the new backing file shared with writers (qemu-img's <c>-U</c>), so that a copying rebase works while another
    /// process writes it (and may then copy its data half made). The image itself is opened with the usual locks.
    /// </summary>
    public bool ForceShare { get; init; }
}
