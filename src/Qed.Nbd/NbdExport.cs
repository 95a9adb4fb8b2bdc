namespace Qed.Nbd;

/// <summary>
/// One image offered under a name. Every connection to the export shares the one <see cref="DiskImage"/> (and so
/// its table cache and flush), which is what lets the server advertise CAN_MULTI_CONN honestly.
/// </summary>
public sealed class NbdExport
{
    /// <summary>Creates an export; the server does not own <paramref name="image"/> and never disposes it.</summary>
    /// <param name="name">The export name clients ask for (at most 4096 bytes of UTF-8).</param>
    /// <param name="image">The image to serve.</param>
    /// <param name="readOnly">Refuse writes even if the image is writable.</param>
    /// <param name="description">A human-readable description sent in LIST and INFO, or null.</param>
    public NbdExport(string name, DiskImage image, bool readOnly = false, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(image);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > NbdLimits.MaxString)
            throw new ArgumentException($"The export name is longer than {NbdLimits.MaxString} bytes.", nameof(name));
        if (description != null && System.Text.Encoding.UTF8.GetByteCount(description) > NbdLimits.MaxString)
            throw new ArgumentException($"The export description is longer than {NbdLimits.MaxString} bytes.", nameof(description));
        Name = name;
        Image = image;
        ReadOnly = readOnly || image.IsReadOnly;
        Description = description;
    }

    /// <summary>The name clients ask for.</summary>
    public string Name { get; }

    /// <summary>The image served.</summary>
    public DiskImage Image { get; }

    /// <summary>Whether writes, trims and zeroing are refused with EPERM.</summary>
    public bool ReadOnly { get; }

    /// <summary>The description sent in LIST and NBD_INFO_DESCRIPTION, or null.</summary>
    public string? Description { get; }
}
