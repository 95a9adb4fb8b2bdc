using System.Globalization;

namespace Qed.Cli.Io;

/// <summary>
/// qemu-io's argument handling for one command: getopt-style flags (which, as glibc's getopt, may come after the
/// operands), its number syntax and its pattern bytes, each failure worded as qemu-io words it.
/// </summary>
internal static class IoArgs
{
    /// <summary>qemu-io's largest single request (INT_MAX rounded down to 512 bytes).</summary>
    public const long MaxRequest = 2147483136;

    /// <summary>
    /// Splits <paramref name="args"/> into flags and operands. <paramref name="spec"/> lists the flag letters, a
    /// letter followed by ':' taking a value. Returns null (after printing getopt's message to
    /// <paramref name="error"/>) when a flag is unknown or lacks its value.
    /// </summary>
    public static (List<(char Flag, string? Value)> Flags, List<string> Operands)? Getopt(string command, string[] args, string spec, TextWriter error)
    {
        var flags = new List<(char, string?)>();
        var operands = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (arg == "--") { operands.AddRange(args[(i + 1)..]); break; }
            if (arg.Length < 2 || arg[0] != '-') { operands.Add(arg); continue; }
            for (int j = 1; j < arg.Length; j++)
            {
                char flag = arg[j];
                int at = spec.IndexOf(flag, StringComparison.Ordinal);
                if (at < 0 || flag == ':')
                {
                    error.WriteLine($"{command}: invalid option -- '{flag}'");
                    return null;
                }
                if (at + 1 < spec.Length && spec[at + 1] == ':')
                {
                    string? value = j + 1 < arg.Length ? arg[(j + 1)..] : i + 1 < args.Length ? args[++i] : null;
                    if (value is null)
                    {
                        error.WriteLine($"{command}: option requires an argument -- '{flag}'");
                        return null;
                    }
                    flags.Add((flag, value));
                    break;
                }
                flags.Add((flag, null));
            }
        }
        return (flags, operands);
    }

    /// <summary>
    /// qemu-io's numbers: decimal (with an optional fraction) or 0x hex, then an optional b, k, M, G, T, P or E
    /// suffix (powers of 1024). Prints qemu-io's parse error to <paramref name="output"/> and returns null when bad.
    /// </summary>
    public static long? Number(string text, TextWriter output)
    {
        switch (TryNumber(text, out long value))
        {
            case 0: return value;
            case 1: output.WriteLine($"Parsing error: argument too large -- {text}"); return null;
            default: output.WriteLine($"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {text}"); return null;
        }
    }

    /// <summary>0 when parsed, 1 when too large, 2 when not a number.</summary>
    private static int TryNumber(string text, out long value)
    {
        value = 0;
        int end = 0;
        double number;
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        if (hex)
        {
            end = 2;
            while (end < text.Length && Uri.IsHexDigit(text[end])) end++;
            if (end == 2 || !ulong.TryParse(text.AsSpan(2, end - 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong h))
                return end == 2 ? 2 : 1;
            number = h;
        }
        else
        {
            while (end < text.Length && char.IsAsciiDigit(text[end])) end++;
            int digits = end;
            if (end < text.Length && text[end] == '.')
            {
                end++;
                while (end < text.Length && char.IsAsciiDigit(text[end])) end++;
            }
            if (digits == 0 || !double.TryParse(text.AsSpan(0, end), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out number))
                return 2;
        }
        double scale = 1;
        if (end < text.Length)
        {
            int power = char.ToLowerInvariant(text[end]) switch { 'b' => 0, 'k' => 1, 'm' => 2, 'g' => 3, 't' => 4, 'p' => 5, 'e' => 6, _ => -1 };
            if (power < 0 || end + 1 != text.Length) return 2;
            scale = Math.Pow(1024, power);
        }
        else if (!hex && number != Math.Floor(number))
        {
            return 2; // a fraction needs a unit to mean whole bytes
        }
        double bytes = number * scale;
        if (bytes >= 9.2233720368547758e18) return 1;
        value = (long)bytes;
        return 0;
    }

    /// <summary>A pattern byte as C's strtol with base 0 reads it (decimal, 0x hex or 0 octal), 0 to 255.</summary>
    public static byte? Pattern(string text, TextWriter output)
    {
        long value = -1;
        bool ok;
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            ok = long.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        else if (text.Length > 1 && text[0] == '0')
        {
            ok = text.Skip(1).All(c => c is >= '0' and <= '7');
            if (ok) value = text.Skip(1).Aggregate(0L, (v, c) => Math.Min(v * 8 + (c - '0'), 1 << 20));
        }
        else
            ok = long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
        if (ok && value is >= 0 and <= 255) return (byte)value;
        output.WriteLine($"{text} is not a valid pattern byte");
        return null;
    }
}
