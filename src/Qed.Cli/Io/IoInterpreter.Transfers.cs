using System.Buffers;
using System.Diagnostics;

namespace Qed.Cli.Io;

/// <summary>read, write, readv, writev, aio_read and aio_write.</summary>
internal sealed partial class IoInterpreter
{
    private async Task<bool> ReadAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("read", args, "bCl:pP:qs:v", error);
        if (parsed is null) return Usage("read");
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
                    if ((pattern = IoArgs.Pattern(value!, output)) is null) return false;
                    break;
                case 's':
                    if ((patternOffset = IoArgs.Number(value!, output)) is null) return false;
                    break;
                case 'l':
                    if ((patternLength = IoArgs.Number(value!, output)) is null) return false;
                    break;
            }
        }
        if (operands.Count != 2) return Usage("read");
        if ((patternOffset is not null || patternLength is not null) && pattern is null) return Usage("read");
        if (IoArgs.Number(operands[0], output) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output) is not { } length) return false;
        if (!WithinRequestLimit(length, operands[1])) return false;
        long verifyFrom = patternOffset ?? 0, verifyLength = patternLength ?? length - verifyFrom;
        if (pattern is not null && (verifyFrom < 0 || verifyLength < 0 || verifyFrom + verifyLength > length))
        {
            Stdout("pattern verification range exceeds end of read data");
            return false;
        }
        if (vmState)
        {
            Stdout("read failed: Operation not supported");
            return false;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(length, 1));
        try
        {
            var memory = buffer.AsMemory(0, (int)length);
            var clock = Stopwatch.StartNew();
            try
            {
                await _image!.ReadAsync(offset, memory, ct);
            }
            catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
            {
                Stdout($"read failed: {IoText.Errno(e)}");
                return false;
            }
            clock.Stop();
            bool ok = true;
            lock (_outputLock)
            {
                if (pattern is { } p && memory.Span.Slice((int)verifyFrom, (int)verifyLength).IndexOfAnyExcept(p) >= 0)
                {
                    output.WriteLine($"Pattern verification failed at offset {offset + verifyFrom}, {verifyLength} bytes");
                    ok = false;
                }
                if (quiet) return ok;
                if (verbose) IoText.HexDump(output, offset, memory.Span);
                IoText.Report(output, "read", offset, length, clock.Elapsed, 1, compact);
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
        var parsed = IoArgs.Getopt("write", args, "bcCfnpP:qs:uz", error);
        if (parsed is null) return Usage("write");
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
                    if (IoArgs.Pattern(value!, output) is not { } p) return false;
                    pattern = p;
                    break;
            }
        }
        if (operands.Count != 2) return Usage("write");
        if (sources > 1)
        {
            Stdout("Only one of -z, -P, and -s can be specified at the same time");
            return false;
        }
        if (zero && (vmState || compress))
        {
            Stdout("-z supports neither -b nor -c");
            return false;
        }
        if (unmap && !zero)
        {
            Stdout("-u requires -z to be specified");
            return false;
        }
        if (noFallback && !zero)
        {
            Stdout("-n requires -z to be specified");
            return false;
        }
        if (IoArgs.Number(operands[0], output) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output) is not { } length) return false;
        if (!zero && !WithinRequestLimit(length, operands[1])) return false;
        if (vmState || compress)
        {
            Stdout("write failed: Operation not supported");
            return false;
        }
        if (_image!.IsReadOnly)
        {
            ErrorReport("Block node is read-only");
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
                if (buffer is null) await _image.WriteZeroesAsync(offset, length, ct);
                else await _image.WriteAsync(offset, buffer.AsMemory(0, (int)length), ct);
                if (fua) await _image.FlushAsync(ct);
            }
            catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
            {
                Stdout($"write failed: {IoText.Errno(e)}");
                return false;
            }
            clock.Stop();
            if (!quiet) lock (_outputLock) IoText.Report(output, "wrote", offset, length, clock.Elapsed, 1, compact);
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
                    Stdout($"qemu-io: Source file too small: {path}");
                    return false;
                }
                done += n;
            }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ErrorReport($"Failed to open file {path}: {CliRunner.Describe(e)}");
            return false;
        }
    }

    private bool WithinRequestLimit(long length, string text)
    {
        if (length <= IoArgs.MaxRequest) return true;
        Stdout($"length cannot exceed {IoArgs.MaxRequest}, given {text}");
        return false;
    }

    /// <summary>The operands of readv, writev and the aio commands: an offset and one or more lengths.</summary>
    private (long Offset, long Total)? Vector(string name, List<string> operands)
    {
        if (operands.Count < 2)
        {
            Usage(name);
            return null;
        }
        if (IoArgs.Number(operands[0], output) is not { } offset) return null;
        long total = 0;
        foreach (string text in operands.Skip(1))
        {
            if (IoArgs.Number(text, output) is not { } length) return null;
            if (length > IoArgs.MaxRequest)
            {
                Stdout($"Argument '{text}' exceeds maximum size {IoArgs.MaxRequest}");
                return null;
            }
            total += length;
        }
        if (total > IoArgs.MaxRequest)
        {
            Stdout($"length cannot exceed {IoArgs.MaxRequest}, given {total}");
            return null;
        }
        return (offset, total);
    }

    /// <summary>A vectored or asynchronous transfer's options.</summary>
    private sealed record VectorFlags(byte? Pattern, bool Compact, bool Quiet, bool Verbose, bool Zero, bool Fua, bool Unmap);

    private VectorFlags? ParseVectorFlags(string name, List<(char Flag, string? Value)> flags)
    {
        byte? pattern = null;
        bool compact = false, quiet = false, verbose = false, zero = false, fua = false, unmap = false;
        foreach (var (flag, value) in flags)
        {
            switch (flag)
            {
                case 'C': compact = true; break;
                case 'q': quiet = true; break;
                case 'v': verbose = true; break;
                case 'z': zero = true; break;
                case 'f': fua = true; break;
                case 'u': unmap = true; break;
                case 'i': break; // accounting of failed requests: nothing to account here
                case 'P':
                    if ((pattern = IoArgs.Pattern(value!, output)) is null) return null;
                    break;
            }
        }
        if (zero && pattern is not null)
        {
            Stdout("-z and -P cannot be specified at the same time");
            return null;
        }
        if (unmap && !zero)
        {
            Stdout("-u requires -z to be specified");
            return null;
        }
        return new VectorFlags(pattern, compact, quiet, verbose, zero, fua, unmap);
    }

    private async Task<bool> ReadvAsync(string[] args, CancellationToken ct) => await VectorReadAsync("readv", "Cqv", "P:", args, ct, aio: false);

    private async Task<bool> WritevAsync(string[] args, CancellationToken ct) => await VectorWriteAsync("writev", "Cfq", args, ct, aio: false);

    private async Task<bool> AioReadAsync(string[] args, CancellationToken ct) => await VectorReadAsync("aio_read", "Ciqv", "P:", args, ct, aio: true);

    private async Task<bool> AioWriteAsync(string[] args, CancellationToken ct) => await VectorWriteAsync("aio_write", "Cfiquz", args, ct, aio: true);

    private async Task<bool> VectorReadAsync(string name, string plain, string valued, string[] args, CancellationToken ct, bool aio)
    {
        var parsed = IoArgs.Getopt(name, args, plain + valued, error);
        if (parsed is null) return Usage(name);
        if (ParseVectorFlags(name, parsed.Value.Flags) is not { } f) return false;
        if (Vector(name, parsed.Value.Operands) is not var (offset, total)) return false;
        var image = _image!;
        async Task<bool> Run()
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(total, 1));
            try
            {
                var memory = buffer.AsMemory(0, (int)total);
                var clock = Stopwatch.StartNew();
                try
                {
                    await image.ReadAsync(offset, memory, ct);
                }
                catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
                {
                    Stdout($"{(aio ? "readv" : name)} failed: {IoText.Errno(e)}");
                    return false;
                }
                clock.Stop();
                bool ok = true;
                lock (_outputLock)
                {
                    if (f.Pattern is { } p && memory.Span.IndexOfAnyExcept(p) >= 0)
                    {
                        output.WriteLine($"Pattern verification failed at offset {offset}, {total} bytes");
                        ok = false;
                    }
                    if (f.Quiet) return ok;
                    if (f.Verbose) IoText.HexDump(output, offset, memory.Span);
                    IoText.Report(output, "read", offset, total, clock.Elapsed, 1, f.Compact);
                }
                return ok;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        return aio ? Launch(Run) : await Run();
    }

    private async Task<bool> VectorWriteAsync(string name, string plain, string[] args, CancellationToken ct, bool aio)
    {
        var parsed = IoArgs.Getopt(name, args, plain + "P:", error);
        if (parsed is null) return Usage(name);
        if (ParseVectorFlags(name, parsed.Value.Flags) is not { } f) return false;
        if (Vector(name, parsed.Value.Operands) is not var (offset, total)) return false;
        var image = _image!;
        if (image.IsReadOnly)
        {
            ErrorReport("Block node is read-only");
            return false;
        }
        async Task<bool> Run()
        {
            byte[]? buffer = f.Zero ? null : ArrayPool<byte>.Shared.Rent((int)Math.Max(total, 1));
            try
            {
                buffer?.AsSpan(0, (int)total).Fill(f.Pattern ?? 0xcd);
                var clock = Stopwatch.StartNew();
                try
                {
                    if (buffer is null) await image.WriteZeroesAsync(offset, total, ct);
                    else await image.WriteAsync(offset, buffer.AsMemory(0, (int)total), ct);
                    if (f.Fua) await image.FlushAsync(ct);
                }
                catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
                {
                    Stdout($"{name} failed: {IoText.Errno(e)}");
                    return false;
                }
                clock.Stop();
                if (!f.Quiet) lock (_outputLock) IoText.Report(output, "wrote", offset, total, clock.Elapsed, 1, f.Compact);
                return true;
            }
            finally
            {
                if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        return aio ? Launch(Run) : await Run();
    }

    /// <summary>Starts an aio request; it runs alongside later commands and prints its result when it completes.</summary>
    private bool Launch(Func<Task<bool>> request)
    {
        var task = Task.Run(request);
        lock (_inFlight) _inFlight.Add(task);
        return true;
    }

    private async Task<bool> AioFlushAsync(string[] args, CancellationToken ct)
    {
        await DrainAsync();
        await _image!.FlushAsync(ct);
        return true;
    }
}
