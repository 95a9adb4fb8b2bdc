namespace Qed.Cli.Io;

/// <summary>alloc, map, length and info: the commands that only report on the open image.</summary>
internal sealed class IoQueryCommands(IoOutput output, IoImageSlot slot)
{
    /// <summary>The handlers, by command name.</summary>
    public (string Name, IoHandler Run)[] Handlers =>
    [
        ("alloc", AllocAsync), ("map", MapAsync), ("length", LengthAsync), ("info", InfoAsync),
    ];

    private async Task<bool> AllocAsync(string[] args, CancellationToken ct)
    {
        if (IoArgs.Number(args[0], output.Out) is not { } start) return false;
        long count = 512; // qemu-io's default: one sector
        if (args.Length == 2)
        {
            if (IoArgs.Number(args[1], output.Out) is not { } c) return false;
            count = c;
        }
        var image = slot.Image!;
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
        output.Line($"{allocated}/{count} bytes allocated at offset {IoText.Size(start)}");
        return true;
    }

    /// <summary>Which ranges this layer allocates (data or zero clusters), as qemu-io's map.</summary>
    private async Task<bool> MapAsync(string[] args, CancellationToken ct)
    {
        var image = slot.Image!;
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
            output.Line($"{IoText.Size(length)} (0x{length:x}) bytes {(allocated ? "allocated" : "not allocated"),13} at offset {IoText.Size(start)} (0x{start:x})");
        }
        return true;
    }

    private Task<bool> LengthAsync(string[] args, CancellationToken ct)
    {
        output.Line(IoText.Size(slot.Image!.Size));
        return Task.FromResult(true);
    }

    private Task<bool> InfoAsync(string[] args, CancellationToken ct)
    {
        var image = slot.Image!;
        output.Line($"format name: {image.Format.Name()}");
        output.Line($"cluster size: {IoText.Size(image.Format == ImageFormat.Raw ? 0 : image.ClusterSize)}");
        output.Line("vm state offset: 0 bytes");
        return Task.FromResult(true);
    }
}
