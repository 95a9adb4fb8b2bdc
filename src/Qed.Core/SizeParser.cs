using System.Globalization;

namespace Qed;

/// <summary>Why <see cref="SizeParser"/> refused a size.</summary>
internal enum SizeParseError
{
    /// <summary>The size parsed and is in range.</summary>
    None,

    /// <summary>Not a size: junk, a sign, a fraction of a byte, or an unknown suffix.</summary>
    Invalid,

    /// <summary>A size, but above the largest allowed (or past 2^64 bytes altogether).</summary>
    OutOfRange,
}

/// <summary>
/// Sizes as qemu-img writes them: digits, an optional fraction, and an optional b, k, M, G, T, P or E suffix (powers of
/// 1024); a fraction is rounded to the nearest byte. What qemu-img 7.2 refuses, and how it classes it, was observed:
/// a fraction of a byte (<c>1.5</c>, <c>2.5b</c>) and an integer part past 2^64 with a suffix
/// (<c>99999999999999999999T</c>) are invalid; any value above the maximum (<c>8E</c>, <c>16E</c>, or 2^64 with no
/// suffix) is out of range.
/// </summary>
internal static class SizeParser
{
    private const string Suffixes = "You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

    /// <summary>Parses a size of at most <see cref="long.MaxValue"/>; false for junk, negatives and overflow.</summary>
    public static bool TryParse(string text, out long bytes) => TryParse(text, long.MaxValue, out bytes) == SizeParseError.None;

    /// <summary>Parses a size of at most <paramref name="max"/> bytes, saying why not when it does not.</summary>
    /// <param name="text">The size as written.</param>
    /// <param name="max">The largest size accepted (non-negative).</param>
    /// <param name="bytes">The size; 0 when refused.</param>
    public static SizeParseError TryParse(string text, long max, out long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(max);
        bytes = 0;
        var s = text.AsSpan().Trim();
        int i = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        var whole = s[..i];
        if (whole.IsEmpty) return SizeParseError.Invalid;
        var fraction = ReadOnlySpan<char>.Empty;
        if (i < s.Length && s[i] == '.')
        {
            int start = ++i;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
            fraction = s[start..i];
        }
        int shift = 0;
        bool suffixed = false;
        if (i < s.Length)
        {
            shift = char.ToLowerInvariant(s[i]) switch { 'b' => 0, 'k' => 10, 'm' => 20, 'g' => 30, 't' => 40, 'p' => 50, 'e' => 60, _ => -1 };
            if (shift < 0 || i + 1 != s.Length) return SizeParseError.Invalid;
            suffixed = true;
        }
        // The fraction of a multiple, in double precision and rounded to the nearest byte: the byte counts qemu-img
        // 7.2 prints for 1.1k (1126), 8191.9999P and 4095.9999999999999k (4 MiB) are these.
        double part = fraction.TrimEnd('0').IsEmpty ? 0
            : double.Parse(string.Concat("0.", fraction), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        if (part != 0 && shift == 0) return SizeParseError.Invalid;
        if (!ulong.TryParse(whole, NumberStyles.None, CultureInfo.InvariantCulture, out ulong units))
            return suffixed ? SizeParseError.Invalid : SizeParseError.OutOfRange;
        UInt128 value = ((UInt128)units << shift) + (ulong)Math.Round(part * (1L << shift), MidpointRounding.AwayFromZero);
        if (value > (ulong)max) return SizeParseError.OutOfRange;
        bytes = (long)value;
        return SizeParseError.None;
    }

    /// <summary>Parses a size of at most <see cref="long.MaxValue"/> bytes.</summary>
    /// <exception cref="FormatException">Not a size; the message names the text.</exception>
    /// <exception cref="OverflowException">Out of range; the message names the text and the range.</exception>
    public static long Parse(string text) => TryParse(text, long.MaxValue, out long bytes) switch
    {
        SizeParseError.None => bytes,
        SizeParseError.OutOfRange => throw new OverflowException($"Size '{text}' is out of range: must be between 0 and {long.MaxValue} bytes"),
        _ => throw new FormatException($"Invalid size '{text}': expected a number with an optional k, M, G, T, P or E suffix"),
    };

    /// <summary>
    /// Parses a size of at most <paramref name="max"/> bytes for a named setting, failing in qemu-img's words with
    /// the text added: <c>Invalid buffer size specified: '2G' is out of range. Must be between 0 and 2147483647.</c>
    /// </summary>
    /// <param name="text">The size as written.</param>
    /// <param name="what">What it sets, as qemu-img names it ("buffer size", "offset", "step_size", "image size").</param>
    /// <param name="max">The largest size accepted.</param>
    /// <exception cref="FormatException">Not a size.</exception>
    /// <exception cref="OverflowException">Above <paramref name="max"/>.</exception>
    public static long Parse(string text, string what, long max) => TryParse(text, max, out long bytes) switch
    {
        SizeParseError.None => bytes,
        SizeParseError.OutOfRange => throw new OverflowException($"Invalid {what} specified: '{text}' is out of range. Must be between 0 and {max}."),
        _ => throw new FormatException($"Invalid {what} specified: '{text}'. {Suffixes}"),
    };
}
