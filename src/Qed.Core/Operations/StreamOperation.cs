namespace Qed.Operations;

/// <summary>
/// Image streaming: copies everything the backing chain supplies into a QED image and then detaches the backing
/// file. The image stays readable and writable throughout (it may be served meanwhile); a crash or a cancellation at
/// any point leaves a consistent image that still names its backing file until the very end.
/// </summary>
public static class StreamOperation
{
    private const int Chunk = 1 << 20;

    /// <summary>Streams the whole chain into <paramref name="image"/>; progress reports guest bytes examined.</summary>
    public static async Task RunAsync(QedImage image, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        if (image.Backing is null) return;
        var buffer = new byte[Math.Max(Chunk, image.ClusterSize)];
        long offset = 0;
        while (offset < image.Size)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var extent = await image.GetLayerExtentAsync(offset, Math.Min(image.Size - offset, buffer.Length), cancellationToken).ConfigureAwait(false);
            if (extent.Kind == ExtentKind.Unallocated && await SuppliesDataAsync(image, offset, extent.Length, cancellationToken).ConfigureAwait(false))
            {
                var data = buffer.AsMemory(0, (int)extent.Length);
                await image.ReadAsync(offset, data, cancellationToken).ConfigureAwait(false);
                if (!await image.CopyUpAsync(offset, data, cancellationToken).ConfigureAwait(false))
                    continue; // a guest request got there first: look at this range again
            }
            offset += extent.Length;
            progress?.Report(offset);
        }
        await image.DetachBackingAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether some layer below supplies data (not just zeroes) anywhere in the range.</summary>
    private static async Task<bool> SuppliesDataAsync(QedImage image, long offset, long length, CancellationToken ct)
    {
        await foreach (var run in AllocationMap.EnumerateAsync(image, offset, length, ct).ConfigureAwait(false))
            if (run.Data) return true;
        return false;
    }
}
