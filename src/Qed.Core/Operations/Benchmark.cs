using System.Diagnostics;

namespace Qed.Operations;

/// <summary>The workload of <c>qemu-img bench</c>: requests at offset + i × step, a fixed number in flight.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>Number of requests (qemu-img's default 75000).</summary>
    public int Count { get; init; } = 75000;
    /// <summary>Requests in flight (default 64).</summary>
    public int Depth { get; init; } = 64;
    /// <summary>Bytes per request (default 4 KiB).</summary>
    public int BufferSize { get; init; } = 4096;
    /// <summary>Distance between request offsets; 0 means <see cref="BufferSize"/>.</summary>
    public long Step { get; init; }
    /// <summary>Offset of the first request.</summary>
    public long Offset { get; init; }
    /// <summary>Write instead of read.</summary>
    public bool Write { get; init; }
    /// <summary>Byte written by write requests.</summary>
    public byte Pattern { get; init; }
    /// <summary>Flush after every this many requests (0: never).</summary>
    public int FlushInterval { get; init; }
    /// <summary>Flush without first waiting for the requests in flight.</summary>
    public bool NoDrain { get; init; }
}

/// <summary>Runs a <see cref="BenchmarkOptions"/> workload against an image and times it.</summary>
public static class Benchmark
{
    /// <summary>Runs the workload; returns the time from the first request to the last completion.</summary>
    public static async Task<TimeSpan> RunAsync(DiskImage image, BenchmarkOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Depth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BufferSize, 1);
        if (options.BufferSize > image.Size)
            throw new ArgumentException($"The request size {options.BufferSize} is larger than the image ({image.Size} bytes)");
        long step = options.Step == 0 ? options.BufferSize : options.Step;
        var free = new Stack<byte[]>();
        for (int i = 0; i < options.Depth; i++)
        {
            var buffer = GC.AllocateUninitializedArray<byte>(options.BufferSize, pinned: true);
            buffer.AsSpan().Fill(options.Pattern);
            free.Push(buffer);
        }
        var slots = new SemaphoreSlim(options.Depth);
        Exception? failure = null;
        long offset = options.Offset;
        var clock = Stopwatch.StartNew();

        async Task RunOneAsync(long at, byte[] buffer)
        {
            try
            {
                if (options.Write) await image.WriteAsync(at, buffer, cancellationToken).ConfigureAwait(false);
                else await image.ReadAsync(at, buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
            finally
            {
                lock (free) free.Push(buffer);
                slots.Release();
            }
        }

        for (int i = 0; i < options.Count && failure is null; i++)
        {
            await slots.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (options.FlushInterval > 0 && i > 0 && i % options.FlushInterval == 0)
            {
                if (!options.NoDrain)
                {
                    for (int d = 1; d < options.Depth; d++) await slots.WaitAsync(cancellationToken).ConfigureAwait(false);
                    await image.FlushAsync(cancellationToken).ConfigureAwait(false);
                    slots.Release(options.Depth - 1);
                }
                else
                {
                    await image.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }
            byte[] buffer;
            lock (free) buffer = free.Pop();
            _ = RunOneAsync(offset, buffer);
            offset = (offset + step) % image.Size; // wraps as qemu-img bench does
        }
        for (int d = 0; d < options.Depth; d++) await slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        clock.Stop();
        if (failure != null) throw failure;
        return clock.Elapsed;
    }
}
