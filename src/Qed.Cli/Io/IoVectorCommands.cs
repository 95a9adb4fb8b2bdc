using System.Buffers;
using System.Diagnostics;

namespace Qed.Cli.Io;

/// <summary>
/// readv, writev, aio_read, aio_write and aio_flush: transfers given as an offset and one or more lengths, run at
/// once (readv, writev) or started as <see cref="AioRequests"/> that print their result when they complete.
/// </summary>
internal sealed class IoVectorCommands(IoOutput output, IoImageSlot slot, AioRequests aio)
{
    /// <summary>The handlers, by command name.</summary>
    public (string Name, IoHandler Run)[] Handlers =>
    [
        ("readv", ReadvAsync), ("writev", WritevAsync), ("aio_read", AioReadAsync), ("aio_write", AioWriteAsync), ("aio_flush", AioFlushAsync),
    ];

    /// <summary>The operands of readv, writev and the aio commands: an offset and one or more lengths.</summary>
    private (long Offset, long Total)? Vector(string name, List<string> operands)
    {
        if (operands.Count < 2)
        {
            output.Usage(name);
            return null;
        }
        if (IoArgs.Number(operands[0], output.Out) is not { } offset) return null;
        long total = 0;
        foreach (string text in operands.Skip(1))
        {
            if (IoArgs.Number(text, output.Out) is not { } length) return null;
            if (length > IoArgs.MaxRequest)
            {
                output.Line($"Argument '{text}' exceeds maximum size {IoArgs.MaxRequest}");
                return null;
            }
            total += length;
        }
        if (total > IoArgs.MaxRequest)
        {
            output.Line($"length cannot exceed {IoArgs.MaxRequest}, given {total}");
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
                    if ((pattern = IoArgs.Pattern(value!, output.Out)) is null) return null;
                    break;
            }
        }
        if (zero && pattern is not null)
        {
            output.Line("-z and -P cannot be specified at the same time");
            return null;
        }
        if (unmap && !zero)
        {
            output.Line("-u requires -z to be specified");
            return null;
        }
        return new VectorFlags(pattern, compact, quiet, verbose, zero, fua, unmap);
    }

    private async Task<bool> ReadvAsync(string[] args, CancellationToken ct) => await VectorReadAsync("readv", "Cqv", "P:", args, ct, isAio: false);

    private async Task<bool> WritevAsync(string[] args, CancellationToken ct) => await VectorWriteAsync("writev", "Cfq", args, ct, isAio: false);

    private async Task<bool> AioReadAsync(string[] args, CancellationToken ct) => await VectorReadAsync("aio_read", "Ciqv", "P:", args, ct, isAio: true);

    private async Task<bool> AioWriteAsync(string[] args, CancellationToken ct) => await VectorWriteAsync("aio_write", "Cfiquz", args, ct, isAio: true);

    private async Task<bool> VectorReadAsync(string name, string plain, string valued, string[] args, CancellationToken ct, bool isAio)
    {
        var parsed = IoArgs.Getopt(name, args, plain + valued, output.Err);
        if (parsed is null) return output.Usage(name);
        if (ParseVectorFlags(name, parsed.Value.Flags) is not { } f) return false;
        if (Vector(name, parsed.Value.Operands) is not var (offset, total)) return false;
        var image = slot.Image!;
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
                    output.Line($"{(isAio ? "readv" : name)} failed: {IoText.Errno(e)}");
                    return false;
                }
                clock.Stop();
                bool ok = true;
                using (output.Hold())
                {
                    if (f.Pattern is { } p && memory.Span.IndexOfAnyExcept(p) >= 0)
                    {
                        output.Out.WriteLine($"Pattern verification failed at offset {offset}, {total} bytes");
                        ok = false;
                    }
                    if (f.Quiet) return ok;
                    if (f.Verbose) IoText.HexDump(output.Out, offset, memory.Span);
                    IoText.Report(output.Out, "read", offset, total, clock.Elapsed, 1, f.Compact);
                }
                return ok;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        return isAio ? aio.Launch(Run) : await Run();
    }

    private async Task<bool> VectorWriteAsync(string name, string plain, string[] args, CancellationToken ct, bool isAio)
    {
        var parsed = IoArgs.Getopt(name, args, plain + "P:", output.Err);
        if (parsed is null) return output.Usage(name);
        if (ParseVectorFlags(name, parsed.Value.Flags) is not { } f) return false;
        if (Vector(name, parsed.Value.Operands) is not var (offset, total)) return false;
        var image = slot.Image!;
        if (image.IsReadOnly)
        {
            output.ErrorReport("Block node is read-only");
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
                    output.Line($"{name} failed: {IoText.Errno(e)}");
                    return false;
                }
                clock.Stop();
                if (!f.Quiet) using (output.Hold()) IoText.Report(output.Out, "wrote", offset, total, clock.Elapsed, 1, f.Compact);
                return true;
            }
            finally
            {
                if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        return isAio ? aio.Launch(Run) : await Run();
    }

    private async Task<bool> AioFlushAsync(string[] args, CancellationToken ct)
    {
        await aio.DrainAsync();
        await slot.Image!.FlushAsync(ct);
        return true;
    }
}
