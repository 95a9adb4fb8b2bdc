using Qed.Check;

namespace Qed;

/// <summary>How <see cref="ImageFile.CheckAsync(string, CheckOptions?, IProgress{ImageProgress}?, CancellationToken)"/> checks.</summary>
public sealed record CheckOptions
{
    /// <summary>
    /// What to repair (qemu-img check's <c>-r</c>); <see cref="CheckRepair.None"/> (the default) only reports, and opens
    /// the file read-only. A repair never discards a cluster that held data.
    /// </summary>
    public CheckRepair Repair { get; init; }

    /// <summary>The image's format (<see cref="ImageFormat.Qed"/> or <see cref="ImageFormat.Qcow2"/>); null to probe it.</summary>
    public ImageFormat? Format { get; init; }
}
