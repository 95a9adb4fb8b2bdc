using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Qed.Cli.Io;

/// <summary>
/// Runs qemu-io style commands (<c>read</c>, <c>write</c>, <c>discard</c>, <c>flush</c>, <c>map</c>) against an
/// open image and prints qemu-io's lines. A failed command is reported and the next one still runs; the exit code
/// says whether any failed (a read that does not match its pattern counts as failed).
/// </summary>
internal sealed class IoInterpreter(DiskImage image, TextWriter output)
{
    /// <summary>Buffers above this are refused rather than allocated (qemu-io's own limit is similar).</summary>
    private const long MaxTransfer = 1L << 30;

    /// <summary>Runs one command line; returns false when it failed.</summary>
    public async Task<bool> RunAsync(string commandLine, CancellationToken ct)
    {
        var words = commandLine.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0) return true;
        string name = words[0];
        try
        {
            return name switch
            {
                "read" => await ReadAsync(words[1..], ct),
                "write" => await WriteAsync(words[1..], ct),
                "discard" => await DiscardAsync(words[1..], ct),
                "flush" => await FlushAsync(ct),
                "map" => await MapAsync(ct),
                _ => Fail($"command \"{name}\" not found"),
            };
        }
        catch (UsageException e)
        {
            return Fail($"{name}: {e.Message}");
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            return Fail($"{name} failed: {CliRunner.Describe(e)}");
        }
    }

    private async Task<bool> ReadAsync(string[] args, CancellationToken ct)
    {
        var (flags, rest) = ParseFlags(args, withValue: "P", plain: "vq");
        var (offset, length) = Range(rest);
        var buffer = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            var memory = buffer.AsMemory(0, (int)length);
            var clock = Stopwatch.StartNew();
            await image.ReadAsync(offset, memory, ct);
            clock.Stop();
            bool ok = true;
            if (flags.TryGetValue('P', out var p))
            {
                byte pattern = Pattern(p!);
                if (memory.Span.IndexOfAnyExcept(pattern) >= 0)
                {
                    output.WriteLine($"Pattern verification failed at offset {offset}, {length} bytes");
                    ok = false;
                }
            }
            if (flags.ContainsKey('v')) HexDump(offset, memory.Span);
            if (!flags.ContainsKey('q')) Report("read", offset, length, clock.Elapsed);
            return ok;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task<bool> WriteAsync(string[] args, CancellationToken ct)
    {
        var (flags, rest) = ParseFlags(args, withValue: "P", plain: "zqu");
        var (offset, length) = Range(rest);
        if (flags.ContainsKey('z') && flags.ContainsKey('P')) throw new UsageException("-z and -P cannot be specified at the same time");
        var clock = Stopwatch.StartNew();
        if (flags.ContainsKey('z'))
        {
            await image.WriteZeroesAsync(offset, length, ct);
        }
        else
        {
            byte pattern = flags.TryGetValue('P', out var p) ? Pattern(p!) : (byte)0xcd; // qemu-io's default pattern
            var buffer = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                buffer.AsSpan(0, (int)length).Fill(pattern);
                await image.WriteAsync(offset, buffer.AsMemory(0, (int)length), ct);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        clock.Stop();
        if (!flags.ContainsKey('q')) Report("wrote", offset, length, clock.Elapsed);
        return true;
    }

    private async Task<bool> DiscardAsync(string[] args, CancellationToken ct)
    {
        var (flags, rest) = ParseFlags(args, withValue: "", plain: "q");
        var (offset, length) = Range(rest, bounded: false);
        var clock = Stopwatch.StartNew();
        await image.DiscardAsync(offset, length, ct);
        clock.Stop();
        if (!flags.ContainsKey('q')) Report("discard", offset, length, clock.Elapsed);
        return true;
    }

    private async Task<bool> FlushAsync(CancellationToken ct)
    {
        await image.FlushAsync(ct);
        return true;
    }

    /// <summary>Which ranges this layer allocates (data or zero clusters), as qemu-io's map.</summary>
    private async Task<bool> MapAsync(CancellationToken ct)
    {
        long offset = 0;
        while (offset < image.Size)
        {
            bool allocated = false;
            long start = offset;
            bool first = true;
            while (offset < image.Size)
            {
                var extent = await image.GetLayerExtentAsync(offset, image.Size - offset, ct);
                bool here = extent.Kind != ExtentKind.Unallocated;
                if (!first && here != allocated) break;
                allocated = here;
                first = false;
                offset += extent.Length;
            }
            long length = offset - start;
            output.WriteLine($"{IoSize(length)} (0x{length:x}) bytes {(allocated ? "allocated" : "not allocated"),13} at offset {IoSize(start)} (0x{start:x})");
        }
        return true;
    }

    private void HexDump(long offset, ReadOnlySpan<byte> data)
    {
        var line = new StringBuilder();
        for (int i = 0; i < data.Length; i += 16)
        {
            line.Clear().Append((offset + i).ToString("x8", CultureInfo.InvariantCulture)).Append(":  ");
            var row = data.Slice(i, Math.Min(16, data.Length - i));
            foreach (byte b in row) line.Append(b.ToString("x2", CultureInfo.InvariantCulture)).Append(' ');
            line.Append(' '); // qemu-io does not pad a short last row
            foreach (byte b in row) line.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            output.WriteLine(line.ToString());
        }
    }

    private void Report(string verb, long offset, long length, TimeSpan elapsed)
    {
        output.WriteLine($"{verb} {length}/{length} bytes at offset {offset}");
        double seconds = Math.Max(elapsed.TotalSeconds, 1e-6);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{IoSize(length)}, 1 ops; {seconds:00.00} sec ({IoSize((long)(length / seconds))}/sec and {1 / seconds:0.0000} ops/sec)"));
    }

    private bool Fail(string message)
    {
        output.Flush();
        Console.Error.WriteLine(message);
        return false;
    }

    /// <summary>Splits leading -X flags from the operands; flags in <paramref name="withValue"/> take a value.</summary>
    private static (Dictionary<char, string?> Flags, string[] Operands) ParseFlags(string[] args, string withValue, string plain)
    {
        var flags = new Dictionary<char, string?>();
        int i = 0;
        for (; i < args.Length && args[i].Length >= 2 && args[i][0] == '-' && !char.IsDigit(args[i][1]); i++)
        {
            char flag = args[i][1];
            if (withValue.Contains(flag))
            {
                string? value = args[i].Length > 2 ? args[i][2..] : i + 1 < args.Length ? args[++i] : null;
                flags[flag] = value ?? throw new UsageException($"option -{flag} needs a value");
            }
            else if (plain.Contains(flag) && args[i].Length == 2)
            {
                flags[flag] = null;
            }
            else
            {
                throw new UsageException($"invalid option '{args[i]}'");
            }
        }
        return (flags, args[i..]);
    }

    private static (long Offset, long Length) Range(string[] operands, bool bounded = true)
    {
        if (operands.Length != 2) throw new UsageException("expected OFFSET and LENGTH");
        long offset = Number(operands[0], "offset"), length = Number(operands[1], "length");
        if (bounded && length > MaxTransfer) throw new UsageException($"length {length} is larger than {MaxTransfer} bytes");
        return (offset, length);
    }

    /// <summary>Decimal or 0x hex, with an optional k, M, G, T suffix.</summary>
    private static long Number(string text, string what)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) &&
            long.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long hex) && hex >= 0)
            return hex;
        if (SizeParser.TryParse(text, out long n)) return n;
        throw new UsageException($"invalid {what} '{text}'");
    }

    private static byte Pattern(string text)
    {
        long value;
        bool ok = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        if (!ok || value is < 0 or > 255) throw new UsageException($"invalid pattern '{text}' (0 to 255, decimal or 0x hex)");
        return (byte)value;
    }

    /// <summary>qemu-io's sizes: whole units print bare ("64 KiB"), others with three decimals.</summary>
    private static string IoSize(long bytes)
    {
        string[] units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if (bytes < 1024) return $"{bytes} bytes";
        int unit = 0;
        double value = bytes / 1024.0;
        while (unit + 1 < units.Length && value >= 1024) { value /= 1024; unit++; }
        return value == Math.Floor(value)
            ? string.Create(CultureInfo.InvariantCulture, $"{value:0} {units[unit]}")
            : string.Create(CultureInfo.InvariantCulture, $"{value:0.000} {units[unit]}");
    }

    private sealed class UsageException(string message) : Exception(message);
}
