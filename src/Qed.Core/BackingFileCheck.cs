namespace Qed;

/// <summary>Whether creating an image opens the backing file it names (<see cref="ImageCreateOptions.BackingCheck"/>).</summary>
public enum BackingFileCheck
{
    /// <summary>
    /// Open the backing file (read-only, shared) before the image is created: a missing or unreadable one is an error
    /// naming it, and its size is the new image's when none is given. The image is then returned open over its chain.
    /// </summary>
    Open,

    /// <summary>
    /// Record the backing file's name without opening it, as qemu-img create <c>-u</c>: it may not exist yet, and
    /// <see cref="ImageCreateOptions.Size"/> must be given. The image is returned open read-only without its backing
    /// chain (as <see cref="ImageOpenOptions.NoBacking"/>): writes without the backing file's data would hide that data
    /// in the clusters they touch. Open it with <see cref="DiskImage.OpenAsync(string, ImageOpenOptions?, CancellationToken)"/>
    /// once the backing file is there.
    /// </summary>
    None,
}
