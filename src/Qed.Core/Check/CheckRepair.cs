namespace Qed.Check;

/// <summary>What a check may repair, as qemu-img check's <c>-r</c>.</summary>
public enum CheckRepair
{
    /// <summary>Report only; the file is not changed.</summary>
    None,
    /// <summary>Repair what is safe to repair and reclaim leaked clusters.</summary>
    Leaks,
    /// <summary>Repair everything that can be repaired.</summary>
    All,
}
