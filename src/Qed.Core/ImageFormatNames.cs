using System.Diagnostics.CodeAnalysis;

namespace Qed;

/// <summary>Each <see cref="ImageFormat"/>'s name as qemu-img spells it (<c>qed</c>, <c>qcow2</c>, <c>raw</c>), and back.</summary>
internal static class ImageFormatNames
{
    /// <summary>The name qemu-img uses for <paramref name="format"/>.</summary>
    public static string Name(this ImageFormat format) => format switch
    {
        ImageFormat.Qed => "qed",
        ImageFormat.Qcow2 => "qcow2",
        ImageFormat.Raw => "raw",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Not an ImageFormat value."),
    };

    /// <summary>Parses a qemu-img format name; false for anything else (names are case-sensitive, as qemu-img's).</summary>
    public static bool TryParse([NotNullWhen(true)] string? name, out ImageFormat format)
    {
        switch (name)
        {
            case "qed": format = ImageFormat.Qed; return true;
            case "qcow2": format = ImageFormat.Qcow2; return true;
            case "raw": format = ImageFormat.Raw; return true;
            default: format = default; return false;
        }
    }

    /// <summary>
    /// The format a qemu-img name stands for, or null for null (probe); a name that is none is refused as an open
    /// refuses it. For internal callers that still carry names.
    /// </summary>
    /// <exception cref="NotSupportedException">The name is not qed, qcow2 or raw.</exception>
    public static ImageFormat? FromName(string? name) =>
        name is null ? null : TryParse(name, out var format) ? format : throw new NotSupportedException($"Unknown image format '{name}' (known: qed, raw, qcow2)");
}
