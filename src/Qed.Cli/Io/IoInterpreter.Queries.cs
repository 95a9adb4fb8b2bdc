using Qed.Formats.Qed;

namespace Qed.Cli.Io;

/// <summary>alloc, map, length, info, truncate, discard and flush.</summary>
internal sealed partial class IoInterpreter
{
    private async Task<bool> AllocAsync(string[] args, CancellationToken ct)
    {
        if (IoArgs.Number(args[0], output) is not { } start) return false;
        long count = 512; // qemu-io's default: one sector
        if (args.Length == 2)
        {
            if (IoArgs.Number(args[1], output) is not { } c) return false;
            count = c;
        }
        var image = _image!;
        long offset = start, allocated = 0, remaining = count;
        while (remaining > 0)
        {
            if (offset >= image.Size)
            {
                count -= remaining; // as qemu-io: the part past the end is not counted
                break;
            }
            var extent = await image.GetLayerExtentAsync(offset, Math.Min(remaining, image.Size - offset), ct);
            long n = Math.Min(extent.Length, remaining);
            if (n <= 0) { count -= remaining; break; }
            if (extent.Kind != ExtentKind.Unallocated) allocated += n;
            offset += n;
            remaining -= n;
        }
        Stdout($"{allocated}/{count} bytes allocated at offset {IoText.Size(start)}");
        return true;
    }

    /// <summary>Which ranges this layer allocates (data or zero clusters), as qemu-io's map.</summary>
    private async Task<bool> MapAsync(string[] args, CancellationToken ct)
    {
        var image = _image!;
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
            Stdout($"{IoText.Size(length)} (0x{length:x}) bytes {(allocated ? "allocated" : "not allocated"),13} at offset {IoText.Size(start)} (0x{start:x})");
        }
        return true;
    }

    private Task<bool> LengthAsync(string[] args, CancellationToken ct)
    {
        Stdout(IoText.Size(_image!.Size));
        return Task.FromResult(true);
    }

    private Task<bool> InfoAsync(string[] args, CancellationToken ct)
    {
        var image = _image!;
        Stdout($"format name: {image.Format}");
        Stdout($"cluster size: {IoText.Size(image.Format == "raw" ? 0 : image.ClusterSize)}");
        Stdout("vm state offset: 0 bytes");
        return Task.FromResult(true);
    }

    private async Task<bool> TruncateAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("truncate", args, "m:", error);
        if (parsed is null) return Usage("truncate");
        var (flags, operands) = parsed.Value;
        foreach (var (_, mode) in flags)
        {
            if (mode != "off")
            {
                ErrorReport($"Unsupported preallocation mode '{mode}'");
                return false;
            }
        }
        if (operands.Count != 1) return Usage("truncate");
        if (IoArgs.Number(operands[0], output) is not { } size) return false;
        var image = _image!;
        if (image.IsReadOnly)
        {
            ErrorReport("Block node is read-only");
            return false;
        }
        if (image is not QedImage qed)
        {
            ErrorReport($"Image format '{image.Format}' does not support resizing here");
            return false;
        }
        if (size < qed.Size)
        {
            ErrorReport("Shrinking images is currently not supported");
            return false;
        }
        await qed.ResizeAsync(size, allowShrink: false, ct);
        return true;
    }

    private async Task<bool> DiscardAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("discard", args, "Cq", error);
        if (parsed is null) return Usage("discard");
        var (flags, operands) = parsed.Value;
        if (operands.Count != 2) return Usage("discard");
        if (IoArgs.Number(operands[0], output) is not { } offset) return false;
        if (IoArgs.Number(operands[1], output) is not { } length) return false;
        if (!WithinRequestLimit(length, operands[1])) return false;
        var image = _image!;
        if (image.IsReadOnly)
        {
            ErrorReport("Block node is read-only");
            return false;
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await image.DiscardAsync(offset, length, ct);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            Stdout($"discard failed: {IoText.Errno(e)}");
            return false;
        }
        clock.Stop();
        if (!flags.Any(f => f.Flag == 'q'))
            lock (_outputLock) IoText.Report(output, "discard", offset, length, clock.Elapsed, 1, flags.Any(f => f.Flag == 'C'));
        return true;
    }

    private async Task<bool> FlushAsync(string[] args, CancellationToken ct)
    {
        await _image!.FlushAsync(ct);
        return true;
    }
}
