using System.Globalization;

namespace Qed;

/// <summary>Sizes as qemu-img writes them: a number with an optional k, M, G, T, P or E suffix (powers of 1024).</summary>
public static class SizeParser
{
    /// <summary>Parses a size; <c>b</c> or no suffix means bytes. Returns false for junk, negatives and overflow.</summary>
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        text = text.Trim();
        if (text.Length == 0) return false;
        int shift = char.ToLowerInvariant(text[^1]) switch
        {
            'b' => 0, 'k' => 10, 'm' => 20, 'g' => 30, 't' => 40, 'p' => 50, 'e' => 60, _ => -1,
        };
        string number = shift >= 0 ? text[..^1] : text;
        if (shift < 0) shift = 0;
        if (number.Length == 0 || number[0] is '-' or '+') return false;
        if (!decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)) return false;
        decimal scaled = value * (1L << shift);
        if (scaled > long.MaxValue) return false;
        bytes = (long)decimal.Ceiling(scaled);
        return true;
    }

    /// <summary>Parses a size or throws <see cref="FormatException"/> naming the text.</summary>
    public static long Parse(string text) =>
        TryParse(text, out long bytes) ? bytes : throw new FormatException($"Invalid size '{text}': expected a number with an optional k, M, G, T, P or E suffix");
}
