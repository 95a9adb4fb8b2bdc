using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Write;

/// <summary>
/// New clusters come from the end of the file, which grows ahead of them in steps. The step is taken by the allocation
/// that comes near the end, after it leaves the allocation lock, so other allocations go on meanwhile; the file still
/// covers every cluster handed out, and a failed step is retried, under the lock, by the allocation that needs it.
/// </summary>
public class FileGrowthTests
{
    private const int Cluster = 64 * 1024;

    /// <summary>Records growth and checks that no write lands past the length the last finished growth set.</summary>
    private sealed class GrowthStorage(MemoryStorage file) : ForwardingStorage(file)
    {
        private long _covered = file.Length; // the length that finished growths (or the creation) set
        public int Grows;
        public int FailNextGrows;
        public long WritesPastTheEnd;
        /// <summary>While set, a growth waits here; <see cref="Growing"/> says that one started.</summary>
        public ManualResetEventSlim? HoldGrows;
        public TaskCompletionSource Growing = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            if (offset + data.Length > Volatile.Read(ref _covered)) Interlocked.Increment(ref WritesPastTheEnd);
            return Inner.WriteAsync(offset, data, ct);
        }

        public override ValueTask GrowAsync(long length, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Grows);
            Growing.TrySetResult();
            HoldGrows?.Wait(TimeSpan.FromSeconds(30));
            if (Interlocked.Decrement(ref FailNextGrows) >= 0) throw new IOException("injected: no space left on device");
            if (length > Inner.Length) Inner.SetLengthAsync(length, ct).AsTask().GetAwaiter().GetResult();
            long seen;
            while ((seen = Volatile.Read(ref _covered)) < length && Interlocked.CompareExchange(ref _covered, length, seen) != seen) { }
            return ValueTask.CompletedTask;
        }

        public override ValueTask SetLengthAsync(long length, CancellationToken ct = default)
        {
            Volatile.Write(ref _covered, length);
            return Inner.SetLengthAsync(length, ct);
        }
    }

    private static async Task<(MemoryStorage Memory, GrowthStorage File)> CreateAsync(long size)
    {
        var memory = new MemoryStorage("img");
        await QedImage.CreateAsync(memory, new QedCreateOptions { Size = size });
        return (memory, new GrowthStorage(memory));
    }

    private static byte[] Block(int seed) => Enumerable.Repeat((byte)(seed * 7 + 1), 4096).ToArray();

    [Fact]
    public async Task ConcurrentAllocationsNeverWritePastTheGrownFileAndReadBack()
    {
        var (memory, file) = await CreateAsync(256L << 20);
        const int clusters = 1500; // about 94 MiB of clusters: many growth steps
        await using (var image = await QedImage.OpenAsync(file))
        {
            await Parallel.ForAsync(0, clusters, new ParallelOptions { MaxDegreeOfParallelism = 16 },
                async (i, ct) => await image.WriteAsync((long)i * Cluster, Block(i), ct));
            await image.FlushAsync();
        }
        Assert.Equal(0, file.WritesPastTheEnd);
        Assert.InRange(file.Grows, 2, clusters / 8); // in steps, not a growth per cluster
        Assert.Equal(0, memory.Length % Cluster);
        await using var reopened = await QedImage.OpenAsync(new MemoryStorage(memory.ToArray()), new ImageOpenOptions { ReadOnly = true });
        var back = new byte[4096];
        for (int i = 0; i < clusters; i += 37)
        {
            await reopened.ReadAsync((long)i * Cluster, back);
            Assert.Equal(Block(i), back);
        }
    }

    /// <summary>
    /// Writes a block into cluster <paramref name="i"/> on a thread of its own: the storage's growth blocks the thread
    /// that calls it, and the thread pool must stay free for the writes that should not wait.
    /// </summary>
    private static Task WriteOnOwnThread(QedImage image, int i) =>
        Task.Factory.StartNew(() => image.WriteAsync((long)i * Cluster, Block(i)).AsTask().GetAwaiter().GetResult(),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    [Fact]
    public async Task AllocationsGoOnWhileTheNextStepIsTaken()
    {
        var (_, file) = await CreateAsync(64L << 20);
        await using var image = await QedImage.OpenAsync(file);
        await image.WriteAsync(0, Block(0)); // the first allocation grows the file under the lock: nothing to overlap
        file.Growing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var hold = new ManualResetEventSlim();
        file.HoldGrows = hold;
        try
        {
            // Allocate until one allocation comes near the end and takes the next step, which waits on the hold.
            int next = 1;
            Task? growing = null;
            while (growing is null && next < 64)
            {
                var write = WriteOnOwnThread(image, next++);
                if (await Task.WhenAny(write, file.Growing.Task) == write) await write;
                else growing = write;
            }
            Assert.NotNull(growing);
            // The step is still being taken: allocations into the space already there must not wait for it.
            var other = WriteOnOwnThread(image, next);
            Assert.Same(other, await Task.WhenAny(other, Task.Delay(TimeSpan.FromSeconds(20))));
            await other;
            Assert.False(growing.IsCompleted, "the allocation taking the step was held");
            hold.Set();
            await growing;
        }
        finally
        {
            hold.Set();
        }
        Assert.Equal(0, file.WritesPastTheEnd);
    }

    [Fact]
    public async Task AFailedStepIsRetriedByTheAllocationThatNeedsTheSpace()
    {
        var (memory, file) = await CreateAsync(64L << 20);
        const int clusters = 200; // 12.5 MiB: several steps past the first
        await using (var image = await QedImage.OpenAsync(file))
        {
            await image.WriteAsync(0, Block(0));
            file.FailNextGrows = 1; // the next step (taken ahead, outside the lock) fails
            for (int i = 1; i < clusters; i++) await image.WriteAsync((long)i * Cluster, Block(i));
            await image.FlushAsync();
        }
        Assert.Equal(0, file.WritesPastTheEnd);
        await using var reopened = await QedImage.OpenAsync(new MemoryStorage(memory.ToArray()), new ImageOpenOptions { ReadOnly = true });
        var back = new byte[4096];
        for (int i = 0; i < clusters; i++)
        {
            await reopened.ReadAsync((long)i * Cluster, back);
            Assert.Equal(Block(i), back);
        }
        var check = await Qed.Check.QedChecker.CheckAsync(new MemoryStorage(memory.ToArray()), Qed.Check.CheckRepair.None);
        Assert.Equal(0, check.Corruptions);
        Assert.Equal(0, check.Leaks);
    }

    [Fact]
    public async Task WhenTheSpaceRunsOutTheWriteThatNeedsItFails()
    {
        var (_, file) = await CreateAsync(64L << 20);
        await using var image = await QedImage.OpenAsync(file);
        await image.WriteAsync(0, Block(0));
        file.FailNextGrows = int.MaxValue; // no growth succeeds from here on
        int written = 1;
        var error = await Assert.ThrowsAsync<IOException>(async () =>
        {
            for (; written < 1000; written++) await image.WriteAsync((long)written * Cluster, Block(written));
        });
        Assert.Contains("no space", error.Message);
        Assert.InRange(written, 2, 1000 - 1); // the space grown before the failures was used first
        Assert.Equal(0, file.WritesPastTheEnd);
    }
}
