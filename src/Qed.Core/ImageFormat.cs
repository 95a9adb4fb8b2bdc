namespace Qed;

/// <summary>The disk image formats this library reads and writes.</summary>
public enum ImageFormat
{
    /// <summary>QED, QEMU Enhanced Disk: qemu-img's <c>qed</c>.</summary>
    Qed,

    /// <summary>qcow2, QEMU's copy-on-write format version 2 or 3: qemu-img's <c>qcow2</c>.</summary>
    Qcow2,

    /// <summary>A raw image: the guest's bytes as they are, qemu-img's <c>raw</c>.</summary>
    Raw,
}
