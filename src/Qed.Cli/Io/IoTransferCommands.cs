using System.Buffers;
using System.Diagnostics;

namespace Qed.Cli.Io;

/// <summary>
/// read and write: one synchronous transfer each, with qemu-io's options (pattern fill and verification, a source
/// file, zeroes, FUA, the hex dump) and its report lines. The data goes through a pooled buffer sized to the request,
/// which <see cref="IoArgs.MaxRequest"/> bounds.
/// </summary>
internal sealed class IoTransferCommands(IoOutput output, IoImageSlot slot)
{
    /// <summary>The handlers, by command name.</summary>
    public (string Name, IoHandler Run)[] Handlers => [("read", ReadAsync), ("write", WriteAsync)];

    private async Task<bool> ReadAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("read", args, "bCl:pP:qs:v", output.Err);
        if (parsed is null) return output.Usage("read");
        var (flags, operands) = parsed.Value;
        byte? pattern = null;
        long? patternOffset = null, patternLength = null;
        bool compact = false, quiet = false, verbose = false, vmState = false;
        foreach (var (flag, value) in flags)
        {
            switch (flag)
            {
                case 'b': vmState = true; break;
                case 'C': compact = true; break;
                case 'p': break; // an old flag qemu-io still accepts and ignores
                case 'q': quiet = true; break;
                case 'v': verbose = true; break;
                case 'P':
                    if ((pattern = IoArgs.Pattern(value!, output.Out)) is null) return false;
                    break;
                case 's':
                    if ((patternOffset = IoArgs.Number(value!, output.Out)) is null) return false;
                    break;
                case 'l':
                    if ((patternLength = IoArgs.Number(value!, output.Out)) is null) return false;
                    break;
            }
        }
        if (operands.Count != 2) return output.Usage("read");
        if ((patternOffset is not null || patternLength is not null) && pattern is null) return output.Usage("read");
        if (IoArgs.Number(operands[0], output.Out) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output.Out) is not { } length) return false;
        if (!output.WithinRequestLimit(length, operands[1])) return false;
        long verifyFrom = patternOffset ?? 0, verifyLength = patternLength ?? length - verifyFrom;
        if (pattern is not null && (verifyFrom < 0 || verifyLength < 0 || verifyFrom + verifyLength > length))
        {
            output.Line("pattern verification range exceeds end of read data");
            return false;
        }
        if (vmState)
        {
            output.Line("read failed: Operation not supported");
            return false;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(length, 1));
        try
        {
            var memory = buffer.AsMemory(0, (int)length);
            var clock = Stopwatch.StartNew();
            try
            {
                await slot.Image!.ReadAsync(offset, memory, ct);
            }
            catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
            {
                output.Line($"read failed: {IoText.Errno(e)}");
                return false;
            }
            clock.Stop();
            bool ok = true;
            using (output.Hold())
            {
                if (pattern is { } p && memory.Span.Slice((int)verifyFrom, (int)verifyLength).IndexOfAnyExcept(p) >= 0)
                {
                    output.Out.WriteLine($"Pattern verification failed at offset {offset + verifyFrom}, {verifyLength} bytes");
                    ok = false;
                }
                if (quiet) return ok;
                if (verbose) IoText.HexDump(output.Out, offset, memory.Span);
                IoText.Report(output.Out, "read", offset, length, clock.Elapsed, 1, compact);
            }
            return ok;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task<bool> WriteAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("write", args, "bcCfnpP:qs:uz", output.Err);
        if (parsed is null) return output.Usage("write");
        var (flags, operands) = parsed.Value;
        byte pattern = 0xcd; // qemu-io's default pattern
        string? source = null;
        bool compact = false, quiet = false, zero = false, unmap = false, fua = false, noFallback = false, compress = false, vmState = false;
        int sources = 0;
        foreach (var (flag, value) in flags)
        {
            switch (flag)
            {
                case 'b': vmState = true; break;
                case 'c': compress = true; break;
                case 'C': compact = true; break;
                case 'f': fua = true; break;
                case 'n': noFallback = true; break;
                case 'p': break;
                case 'q': quiet = true; break;
                case 'u': unmap = true; break;
                case 'z': zero = true; sources++; break;
                case 's': source = value; sources++; break;
                case 'P':
                    sources++;
                    if (IoArgs.Pattern(value!, output.Out) is not { } p) return false;
                    pattern = p;
                    break;
            }
        }
        if (operands.Count != 2) return output.Usage("write");
        if (sources > 1)
        {
            output.Line("Only one of -z, -P, and -s can be specified at the same time");
            return false;
        }
        if (zero && (vmState || compress))
        {
            output.Line("-z supports neither -b nor -c");
            return false;
        }
        if (unmap && !zero)
        {
            output.Line("-u requires -z to be specified");
            return false;
        }
        if (noFallback && !zero)
        {
            output.Line("-n requires -z to be specified");
            return false;
        }
        if (IoArgs.Number(operands[0], output.Out) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output.Out) is not { } length) return false;
        if (!zero && !output.WithinRequestLimit(length, operands[1])) return false;
        if (vmState || compress)
        {
            output.Line("write failed: Operation not supported");
            return false;
        }
        var image = slot.Image!;
        if (image.IsReadOnly)
        {
            output.ErrorReport("Block node is read-only");
            return false;
        }
        byte[]? buffer = zero ? null : ArrayPool<byte>.Shared.Rent((int)Math.Max(length, 1));
        try
        {
            if (buffer is not null)
            {
                if (source is not null)
                {
                    if (!FillFromFile(source, buffer.AsSpan(0, (int)length))) return false;
                }
                else buffer.AsSpan(0, (int)length).Fill(pattern);
            }
            var clock = Stopwatch.StartNew();
            try
            {
                if (buffer is null) await image.WriteZeroesAsync(offset, length, ct);
                else await image.WriteAsync(offset, buffer.AsMemory(0, (int)length), ct);
                if (fua) await image.FlushAsync(ct);
            }
            catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
            {
                output.Line($"write failed: {IoText.Errno(e)}");
                return false;
            }
            clock.Stop();
            if (!quiet) using (output.Hold()) IoText.Report(output.Out, "wrote", offset, length, clock.Elapsed, 1, compact);
            return true;
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>write -s: the data comes from the start of a file, which must hold enough.</summary>
    private bool FillFromFile(string path, Span<byte> buffer)
    {
        try
        {
            using var file = File.OpenRead(path);
            int done = 0;
            while (done < buffer.Length)
            {
                int n = file.Read(buffer[done..]);
                if (n == 0)
                {
                    output.Line($"qemu-io: Source file too small: {path}");
                    return false;
                }
                done += n;
            }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            output.ErrorReport($"Failed to open file {path}: {CliRunner.Describe(e)}");
            return false;
        }
    }
}
