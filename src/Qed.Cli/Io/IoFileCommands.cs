using Qed.Formats.Qed;

namespace Qed.Cli.Io;

/// <summary>
/// open, close, flush, truncate and discard: the commands that open, close or change the image as a whole (or drop a
/// range of it). Work on the <see cref="IoImageSlot"/>; close first waits for the aio requests in flight.
/// </summary>
internal sealed class IoFileCommands(IoOutput output, IoImageSlot slot, AioRequests aio)
{
    /// <summary>The handlers, by command name.</summary>
    public (string Name, IoHandler Run)[] Handlers =>
    [
        ("open", OpenAsync), ("close", CloseAsync), ("flush", FlushAsync), ("truncate", TruncateAsync), ("discard", DiscardAsync),
    ];

    private async Task<bool> OpenAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("open", args, "snCro:kt:d:U", output.Err);
        if (parsed is null) return output.Usage("open");
        var (flags, operands) = parsed.Value;
        bool readOnly = false, snapshot = false;
        var cache = Storage.CacheMode.WriteBack;
        string? options = null;
        foreach (var (flag, value) in flags)
        {
            switch (flag)
            {
                case 'r': readOnly = true; break;
                case 'n': cache = Storage.CacheMode.None; break;
                case 't':
                    if (IoOpenSpec.ParseCache(value!) is not { } mode)
                    {
                        output.ErrorReport($"Invalid cache option: {value}");
                        return false;
                    }
                    cache = mode;
                    break;
                case 'o': options = options is null ? value : $"{options},{value}"; break;
                case 's': snapshot = true; break;
            }
        }
        if (operands.Count > 1) return output.Usage("open");
        if (slot.Image is not null)
        {
            output.ErrorReport("file open already, try 'help close'");
            return false;
        }
        if (operands.Count == 0 && options is null) return output.Usage("open");
        string target = operands.Count == 1 ? operands[0] : "";
        if (options is not null)
        {
            // Options after -o name the file (file.filename=) unless a path is given too.
            target = operands.Count == 1 ? $"file.filename={operands[0].Replace(",", ",,", StringComparison.Ordinal)},{options}" : options;
            return await slot.OpenAsync(new IoOpenSpec(target, null, readOnly, cache, ImageOpts: true, snapshot), ct);
        }
        return await slot.OpenAsync(new IoOpenSpec(target, slot.DefaultFormat, readOnly, cache, slot.DefaultImageOpts, snapshot), ct);
    }

    private async Task<bool> CloseAsync(string[] args, CancellationToken ct)
    {
        await aio.DrainAsync();
        await slot.CloseAsync();
        return true;
    }

    private async Task<bool> FlushAsync(string[] args, CancellationToken ct)
    {
        await slot.Image!.FlushAsync(ct);
        return true;
    }

    private async Task<bool> TruncateAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("truncate", args, "m:", output.Err);
        if (parsed is null) return output.Usage("truncate");
        var (flags, operands) = parsed.Value;
        foreach (var (_, mode) in flags)
        {
            if (mode != "off")
            {
                output.ErrorReport($"Unsupported preallocation mode '{mode}'");
                return false;
            }
        }
        if (operands.Count != 1) return output.Usage("truncate");
        if (IoArgs.Number(operands[0], output.Out) is not { } size) return false;
        var image = slot.Image!;
        if (image.IsReadOnly)
        {
            output.ErrorReport("Block node is read-only");
            return false;
        }
        if (image is not QedImage qed)
        {
            output.ErrorReport($"Image format '{image.Format.Name()}' does not support resizing here");
            return false;
        }
        if (size < qed.Size)
        {
            output.ErrorReport("Shrinking images is currently not supported");
            return false;
        }
        await qed.ResizeAsync(size, new ResizeOptions(), ct);
        return true;
    }

    private async Task<bool> DiscardAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("discard", args, "Cq", output.Err);
        if (parsed is null) return output.Usage("discard");
        var (flags, operands) = parsed.Value;
        if (operands.Count != 2) return output.Usage("discard");
        if (IoArgs.Number(operands[0], output.Out) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output.Out) is not { } length) return false;
        if (!output.WithinRequestLimit(length, operands[1])) return false;
        var image = slot.Image!;
        if (image.IsReadOnly)
        {
            output.ErrorReport("Block node is read-only");
            return false;
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await image.DiscardAsync(offset, length, ct);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            output.Line($"discard failed: {IoText.Errno(e)}");
            return false;
        }
        clock.Stop();
        if (!flags.Any(f => f.Flag == 'q'))
            using (output.Hold()) IoText.Report(output.Out, "discard", offset, length, clock.Elapsed, 1, flags.Any(f => f.Flag == 'C'));
        return true;
    }
}
