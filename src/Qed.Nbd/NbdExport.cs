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
    /// <param name="description">A human-readable description sent in LIST and INFO, or null.</param>
    public NbdExport(string name, DiskImage image, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(image);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > NbdLimits.MaxString)
            throw new ArgumentException($"The export name is longer than {NbdLimits.MaxString} bytes.", nameof(name));
        if (description != null && System.Text.Encoding.UTF8.GetByteCount(description) > NbdLimits.MaxString)
            throw new ArgumentException($"The export description is longer than {NbdLimits.MaxString} bytes.", nameof(description));
        Name = name;
        Image = image;
        Description = description;
    }

    /// <summary>The name clients ask for.</summary>
    public string Name { get; }

    /// <summary>The image served.</summary>
    public DiskImage Image { get; }

    /// <summary>
    /// Whether writes, trims and zeroing are refused with EPERM. Set it to refuse them on a writable image; it is
    /// always true for an image opened read-only.
    /// </summary>
    public bool ReadOnly { get => _readOnly || Image.IsReadOnly; init => _readOnly = value; }

    private readonly bool _readOnly;

    /// <summary>The description sent in LIST and NBD_INFO_DESCRIPTION, or null.</summary>
    public string? Description { get; }
}
