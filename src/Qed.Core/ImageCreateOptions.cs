namespace Qed;

/// <summary>
/// How to create an image with <see cref="DiskImage.CreateAsync(string, ImageFormat, ImageCreateOptions, CancellationToken)"/>:
/// what every format shares. Pass this type itself for a format's defaults, or the format's own options
/// (<see cref="Formats.Qed.QedCreateOptions"/>, <see cref="Formats.Qcow2.Qcow2CreateOptions"/>) for the settings only
/// that format has.
/// </summary>
public record ImageCreateOptions
{
    /// <summary>
    /// The guest size in bytes (QED and qcow2 round it up to 512); null to take the backing file's size, which then
    /// must be opened (<see cref="BackingCheck"/> <see cref="BackingFileCheck.Open"/>). Raw images need it.
    /// </summary>
    public long? Size { get; init; }

    /// <summary>
    /// The backing file name to record, absolute or relative to the new image's folder (as QEMU resolves it); null for
    /// none. Raw images have no backing file.
    /// </summary>
    public string? BackingFile { get; init; }

    /// <summary>
    /// The backing file's format, recorded in the image; null to leave it to be probed when the image is opened. QED
    /// can record only <see cref="ImageFormat.Raw"/> (a named QED or qcow2 backing file is probed, and is one).
    /// </summary>
    public ImageFormat? BackingFormat { get; init; }

    /// <summary>Whether the backing file is opened before the image is created (qemu-img create's <c>-u</c> is <see cref="BackingFileCheck.None"/>).</summary>
    public BackingFileCheck BackingCheck { get; init; }

    /// <summary>
    /// Bytes per cluster; null for the format's default (64 KiB for QED and qcow2). QED takes a power of 2 from 4 KiB
    /// to 64 MiB, qcow2 one from 512 bytes to 2 MiB. Raw images have no clusters: leave it null.
    /// </summary>
    public int? ClusterSize { get; init; }
}
