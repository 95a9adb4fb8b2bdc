using System.Globalization;
using System.Text;

namespace Qed.Cli.Io;

/// <summary>qemu-io's printed forms: sizes, the two lines after a transfer, the hex dump and errno texts.</summary>
internal static class IoText
{
    /// <summary>qemu-io's sizes: three decimals in the largest unit not above the value, ".000" dropped ("64 KiB").</summary>
    public static string Size(double bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        int unit = 0;
        while (unit + 1 < units.Length && bytes >= Math.Pow(1024, unit + 1)) unit++;
        string text = (bytes / Math.Pow(1024, unit)).ToString("0.000", CultureInfo.InvariantCulture);
        if (text.EndsWith(".000", StringComparison.Ordinal)) text = text[..^4];
        return $"{text} {units[unit]}";
    }

    /// <summary>
    /// The report after a transfer: "read 4096/4096 bytes at offset 0" and the rate line, or with
    /// <paramref name="compact"/> (-C) qemu-io's one comma-separated line.
    /// </summary>
    public static void Report(TextWriter output, string verb, long offset, long length, TimeSpan elapsed, int ops, bool compact)
    {
        double seconds = Math.Max(elapsed.TotalSeconds, 1e-9);
        if (compact)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{length},{ops},{Time(elapsed, fixedHours: true)},{length / seconds:0.000},{ops / seconds:0.000}"));
            return;
        }
        output.WriteLine($"{verb} {length}/{length} bytes at offset {offset}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Size(length)}, {ops} ops; {Time(elapsed, fixedHours: false)} ({Size(length / seconds)}/sec and {ops / seconds:0.0000} ops/sec)"));
    }

    /// <summary>"00.00 sec" under a minute; H:MM:SS.ss otherwise (always that with <paramref name="fixedHours"/>).</summary>
    private static string Time(TimeSpan t, bool fixedHours)
    {
        int hundredths = t.Milliseconds / 10;
        if (fixedHours || t.TotalHours >= 1)
            return string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}.{hundredths:00}");
        if (t.TotalMinutes >= 1)
            return string.Create(CultureInfo.InvariantCulture, $"{t.Minutes}:{t.Seconds:00}.{hundredths:00}");
        return string.Create(CultureInfo.InvariantCulture, $"{t.Seconds:00}.{hundredths:00} sec");
    }

    /// <summary>Sixteen bytes a row: offset, hex, then printable characters (qemu-io does not pad a short last row).</summary>
    public static void HexDump(TextWriter output, long offset, ReadOnlySpan<byte> data)
    {
        var line = new StringBuilder();
        for (int i = 0; i < data.Length; i += 16)
        {
            line.Clear().Append((offset + i).ToString("x8", CultureInfo.InvariantCulture)).Append(":  ");
            var row = data.Slice(i, Math.Min(16, data.Length - i));
            foreach (byte b in row) line.Append(b.ToString("x2", CultureInfo.InvariantCulture)).Append(' ');
            line.Append(' ');
            foreach (byte b in row) line.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            output.WriteLine(line.ToString());
        }
    }

    /// <summary>The errno text qemu-io prints after "read failed: " for a failure of ours.</summary>
    public static string Errno(Exception e) => e switch
    {
        ArgumentOutOfRangeException => "Input/output error", // QEMU refuses requests past the end with EIO
        NotSupportedException => "Operation not supported",
        ImageFormatException => CliRunner.Describe(e), // a corruption, or writes refused until checked: not a permission
        Formats.Raw.ProbedRawWriteException => CliRunner.Describe(e), // qemu-io: "Operation not permitted"; ours adds why
        InvalidOperationException or UnauthorizedAccessException => "Permission denied",
        _ => CliRunner.Describe(e),
    };
}
