using System.Globalization;

namespace Qed.Cli;

/// <summary>Sizes for people, as qemu-img prints them: three significant digits and a binary unit ("0.999 MiB").</summary>
internal static class HumanSize
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    public static string Format(long bytes)
    {
        // qemu-img moves to the next unit from 1000 of the previous one (1023 KiB prints as 0.999 MiB).
        int unit = 0;
        while (unit + 1 < Units.Length && bytes >= 1000.0 * Math.Pow(1024, unit)) unit++;
        double value = bytes / Math.Pow(1024, unit);
        return value.ToString("G3", CultureInfo.InvariantCulture) + " " + Units[unit];
    }
}
