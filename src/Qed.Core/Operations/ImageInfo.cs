using Qed.Formats.Raw;
using Qed.Formats.Qcow2;
using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// What <c>qemu-img info</c> reports about one layer, with qemu-img's meanings: <see cref="DirtyFlag"/> is the true
/// NEED_CHECK state (qemu-img 7.2 always says false for QED).
/// </summary>
/// <param name="Filename">The image path as the caller gave it (or as the backing chain resolved it).</param>
/// <param name="Format">The format.</param>
/// <param name="VirtualSize">The guest size in bytes.</param>
/// <param name="ClusterSize">The cluster size, or null for formats without clusters (raw).</param>
/// <param name="ActualSize">Bytes the file occupies on the host, or null if unknown.</param>
/// <param name="DirtyFlag">Whether the image is marked as needing a consistency check.</param>
/// <param name="BackingFilename">The backing file name as stored in the image, or null.</param>
/// <param name="FullBackingFilename">The backing name joined with the image's folder as given, or null.</param>
/// <param name="BackingFilenameFormat">
/// The backing format the image records (QED: <see cref="ImageFormat.Raw"/> under NO_PROBE), or null: none recorded,
/// or (qcow2) a name that is no <see cref="ImageFormat"/>.
/// </param>
public sealed record ImageInfo(string Filename, ImageFormat Format, long VirtualSize, int? ClusterSize, long? ActualSize,
    bool DirtyFlag, string? BackingFilename, string? FullBackingFilename, ImageFormat? BackingFilenameFormat)
{
    /// <summary>The backing format's name as the image records it (qcow2 records any name), as qemu-img info prints it; or null.</summary>
    internal string? BackingFilenameFormatName { get; init; }

    /// <summary>A QED image's recovery record, while one is on disk (see <see cref="QedImage.RecoveryRecord"/>), or null.</summary>
    public QedRecoveryRecordInfo? RecoveryRecord { get; init; }

    /// <summary>qemu-img's "Format specific information" for a qcow2 layer; null for other formats.</summary>
    public Qcow2FormatInfo? Qcow2 { get; init; }

    /// <summary>Describes one layer. <paramref name="filename"/> is the path as the caller gave it.</summary>
    public static ImageInfo Describe(DiskImage image, string filename)
    {
        ArgumentNullException.ThrowIfNull(image);
        string? backing = null, backingFormat = null;
        bool dirty = false;
        QedRecoveryRecordInfo? record = null;
        Qcow2FormatInfo? qcow2Info = null;
        // Format-specific fields. A new format (qcow2) adds its case here; everything else is generic.
        switch (image)
        {
            case QedImage qed:
                backing = qed.BackingFilename;
                backingFormat = qed.BackingFormat?.Name();
                dirty = qed.IsDirty;
                record = qed.RecoveryRecord;
                break;
            case Qcow2Image qcow2:
                backing = qcow2.BackingFilename;
                backingFormat = qcow2.BackingFormatName;
                dirty = qcow2.IsDirty; // as qemu-img: the dirty bit (lazy refcounts not yet written back)
                qcow2Info = Qcow2FormatInfo.FromHeader(qcow2.Header);
                break;
        }
        return new ImageInfo(
            ImageName.Display(filename),
            image.Format,
            image.Size,
            image is RawImage ? null : image.ClusterSize,
            image.AllocatedBytes,
            dirty,
            backing,
            backing is null || !ImageName.HasFolder(filename) ? null : QedImage.ResolveBackingPath(filename, backing),
            ImageFormatNames.TryParse(backingFormat, out var known) ? known : null)
        {
            BackingFilenameFormatName = backingFormat, RecoveryRecord = record, Qcow2 = qcow2Info,
        };
    }

    /// <summary>Describes <paramref name="image"/> and every layer under it, top first.</summary>
    public static IReadOnlyList<ImageInfo> DescribeChain(DiskImage image, string filename)
    {
        var list = new List<ImageInfo> { Describe(image, filename) };
        for (var layer = image.Backing; layer != null; layer = layer.Backing)
            list.Add(Describe(layer, layer.Name));
        return list;
    }
}
