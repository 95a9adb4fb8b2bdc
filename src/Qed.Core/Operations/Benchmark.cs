using System.Diagnostics;

namespace Qed.Operations;

/// <summary>The workload of <c>qemu-img bench</c>: requests at offset + i × step, a fixed number in flight.</summary>
internal sealed record BenchmarkOptions
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
internal static class Benchmark
{
    /// <summary>The most memory the per-request buffers take together before all requests share one (256 MiB).</summary>
    public const long SeparateBuffersLimit = 256L << 20;

    /// <summary>Runs the workload; returns the time from the first request to the last completion.</summary>
    public static async Task<TimeSpan> RunAsync(DiskImage image, BenchmarkOptions options, CancellationToken cancellationToken = default)
    {
        Validate(options);
        if (options.BufferSize > image.Size)
            throw new ArgumentException($"The request size {options.BufferSize} is larger than the image ({image.Size} bytes)");
        long step = options.Step == 0 ? options.BufferSize : options.Step;
        // A buffer per request in flight, as qemu-img, while they take at most SeparateBuffersLimit together; past that
        // (1 GiB requests 64 deep would want 64 GiB) every worker shares one: reads discard what they read and writes
        // all send the same pattern, so sharing changes no request, only the memory the run takes.
        var buffers = new byte[options.Depth][];
        bool separate = (long)options.Depth * options.BufferSize <= SeparateBuffersLimit;
        for (int i = 0; i < buffers.Length; i++)
        {
            if (i > 0 && !separate)
            {
                buffers[i] = buffers[0];
                continue;
            }
            buffers[i] = GC.AllocateUninitializedArray<byte>(options.BufferSize, pinned: true);
            buffers[i].AsSpan().Fill(options.Pattern);
        }
        var clock = Stopwatch.StartNew();
        // Depth workers, each with its own buffer, take request numbers from one counter: Depth requests stay in
        // flight with no per-request task, semaphore or lock, so the harness costs the same little on every format.
        // With a flush interval the run goes in rounds of that many requests, and the flush waits for the round;
        // without draining, the worker that takes a multiple of the interval flushes among the requests in flight.
        bool rounds = options.FlushInterval > 0 && !options.NoDrain;
        int roundLength = rounds ? options.FlushInterval : options.Count;
        for (int start = 0; start < options.Count; start += roundLength)
        {
            if (start > 0) await image.FlushAsync(cancellationToken).ConfigureAwait(false);
            var round = new Round(start, (int)Math.Min(options.Count, (long)start + roundLength));
            var workers = new Task[options.Depth];
            for (int w = 0; w < workers.Length; w++)
                workers[w] = WorkAsync(image, options, step, buffers[w], round, cancellationToken);
            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        clock.Stop();
        return clock.Elapsed;
    }

    /// <summary>Checks the options on their own, as qemu-img bench does before it opens the image.</summary>
    /// <exception cref="ArgumentException">A count, depth, size, step or flush interval out of range.</exception>
    public static void Validate(BenchmarkOptions options)
    {
        if (options.Count < 0) throw new ArgumentException($"Invalid request count specified: {options.Count}");
        if (options.Depth < 1) throw new ArgumentException($"Invalid queue depth specified: {options.Depth} (at least 1)");
        if (options.BufferSize < 0) throw new ArgumentException($"Invalid buffer size specified: {options.BufferSize}");
        if (options.BufferSize > Array.MaxLength)
            throw new ArgumentException($"Invalid buffer size specified: {options.BufferSize} is larger than the largest buffer .NET allocates ({Array.MaxLength} bytes)");
        if (options.Step < 0) throw new ArgumentException($"Invalid step size specified: {options.Step}");
        if (options.Offset < 0) throw new ArgumentException($"Invalid offset specified: {options.Offset}");
        if (options.FlushInterval < 0) throw new ArgumentException($"Invalid flush interval specified: {options.FlushInterval}");
        if (options.FlushInterval > 0 && options.FlushInterval < options.Depth)
            throw new ArgumentException("Flush interval can't be smaller than depth"); // qemu-img's words
    }

    /// <summary>The request numbers of one round, handed out in order; a failure ends the round for every worker.</summary>
    private sealed class Round(int start, int end)
    {
        private int _next = start;
        private volatile bool _failed;

        public int End => end;

        public int Take() => _failed ? end : Interlocked.Increment(ref _next) - 1;

        public void Fail() => _failed = true;
    }

    /// <summary>One worker: issues requests, one at a time, until the round runs out.</summary>
    private static async Task WorkAsync(DiskImage image, BenchmarkOptions options, long step, byte[] buffer, Round round, CancellationToken ct)
    {
        await Task.Yield(); // every worker on the thread pool at once, not the first one running before the rest start
        try
        {
            for (int i = round.Take(); i < round.End; i = round.Take())
            {
                if (options.NoDrain && options.FlushInterval > 0 && i > 0 && i % options.FlushInterval == 0)
                    await image.FlushAsync(ct).ConfigureAwait(false);
                long offset = (long)((options.Offset + (Int128)i * step) % image.Size); // wraps as qemu-img bench does
                if (buffer.Length == 0) continue; // qemu-img accepts empty requests; there is nothing to send
                if (options.Write) await image.WriteAsync(offset, buffer, ct).ConfigureAwait(false);
                else await image.ReadAsync(offset, buffer, ct).ConfigureAwait(false);
            }
        }
        catch
        {
            round.Fail();
            throw;
        }
    }
}
