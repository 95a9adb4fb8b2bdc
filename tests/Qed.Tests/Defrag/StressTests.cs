using Qed.Formats.Qed;
using System.Diagnostics;
using Qed.Check;
using Qed.Formats.Raw;
using Qed.Storage;
using Xunit.Abstractions;

namespace Qed.Tests.Defrag;

/// <summary>
/// Discard, online shrink and grow, and defragment run again and again while other tasks read, write, write zeroes,
/// discard and flush; every byte is compared with an in-memory model. Each writer owns a region (so the model of it is
/// exact), readers lock a region while they verify it, and the shrink zone at the top of the image belongs to the
/// maintenance task. The storage underneath asserts that no hole is punched and no tail cut while a mapping still
/// points there or a read or write is in flight there (the bug class behind reused-then-punched clusters).
/// QED_STRESS_SECONDS sets how long each case runs (default 3).
/// </summary>
public class StressTests(ITestOutputHelper output)
{
    private const int ClusterSize = 4096;
    private const long Size = 16L << 20;   // four L2 tables of 4 MiB
    private const long Kept = 12L << 20;   // shrinks cut to here; [Kept, Size) is the shrink zone
    private const int Writers = 4;
    private const long Region = Kept / Writers;

    /// <summary>Marks the current flow as zeroing allocated clusters in place (a legitimate punch of mapped clusters).</summary>
    private static readonly AsyncLocal<bool> ZeroingInPlace = new();

    /// <summary>Memory storage that keeps I/O in flight across a thread hop and watches every punch and cut.</summary>
    private sealed class WatchStorage(MemoryStorage inner) : IBlockStorage
    {
        private readonly Lock _lock = new();
        private readonly List<(long Offset, long Length)> _inFlight = new();
        public readonly List<string> Violations = new();
        public Func<long, long, string?>? FindReference;
        public int Punches, Cuts;

        public string Name => inner.Name;
        public bool CanWrite => true;
        public long Length => inner.Length;

        public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
        {
            var entry = Begin(offset, buffer.Length);
            try
            {
                await Task.Yield();
                await inner.ReadAsync(offset, buffer, ct);
            }
            finally { End(entry); }
        }

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            var entry = Begin(offset, data.Length);
            try
            {
                await Task.Yield();
                await inner.WriteAsync(offset, data, ct);
            }
            finally { End(entry); }
        }

        public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Punches);
            // Freeing punches whole clusters; zeroing in place (write-zeroes, discard, or resize zeroing a cluster's tail
            // past the guest end) may punch mapped clusters, and does so from a flow marked ZeroingInPlace or in part of one.
            bool partial = offset % ClusterSize != 0 || length % ClusterSize != 0;
            Watch("punch", offset, length, checkReferences: !ZeroingInPlace.Value && !partial);
            return inner.ZeroRangeAsync(offset, length, ct);
        }

        public ValueTask SetLengthAsync(long length, CancellationToken ct = default)
        {
            long old = inner.Length;
            if (length < old)
            {
                Interlocked.Increment(ref Cuts);
                Watch("cut", length, old - length, checkReferences: true);
            }
            return inner.SetLengthAsync(length, ct);
        }

        private void Watch(string what, long offset, long length, bool checkReferences)
        {
            lock (_lock)
                foreach (var (o, l) in _inFlight)
                    if (o < offset + length && offset < o + l)
                        Violations.Add($"{what} of [0x{offset:x}, +0x{length:x}) while I/O at [0x{o:x}, +0x{l:x}) is in flight");
            if (checkReferences && FindReference?.Invoke(offset, length) is { } reference)
                lock (_lock) Violations.Add($"{what} of [0x{offset:x}, +0x{length:x}) while {reference} points there");
        }

        private (long, long) Begin(long offset, long length)
        {
            lock (_lock) _inFlight.Add((offset, length));
            return (offset, length);
        }

        private void End((long, long) entry)
        {
            lock (_lock) _inFlight.Remove(entry);
        }

        public ValueTask FlushAsync(CancellationToken ct = default) => inner.FlushAsync(ct);
        public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken ct = default) =>
            inner.GetAllocationAsync(offset, maxLength, ct);
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MaintenanceUnderConcurrentRequestsLosesAndMixesNothing(bool withBacking)
    {
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("QED_STRESS_SECONDS"), out double s) ? s : 3;
        var model = new byte[Size];
        MemoryStorage? backing = null;
        if (withBacking)
        {
            var content = new byte[Size]; // as long as the image: a grown range must hide it
            new Random(77).NextBytes(content);
            content.CopyTo(model, 0);
            backing = new MemoryStorage(content, "base.raw", access: FileAccess.Read);
        }
        var memory = new MemoryStorage();
        await QedImage.CreateAsync(memory, new QedCreateOptions
        {
            Size = Size, ClusterSize = ClusterSize, TableSize = 2,
            BackingFile = withBacking ? "base.raw" : null, BackingFormat = withBacking ? ImageFormat.Raw : null,
        });
        Func<string, ImageFormat?, CancellationToken, Task<DiskImage>>? opener =
            backing is null ? null : (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true));
        var storage = new WatchStorage(memory);
        var image = await QedImage.OpenAsync(storage, null, opener, new QedTuning { DefragBatchBytes = 256 << 10 }); // many pauses per pass
        storage.FindReference = image.TestFindReference;

        var locks = Enumerable.Range(0, Writers).Select(_ => new SemaphoreSlim(1, 1)).ToArray();
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        int[] counts = new int[8]; // write, zero, discard, flush, read, defrag, shrink, grow
        var stop = new CancellationTokenSource();
        // With a backing file, discard turns this layer's clusters into zero clusters and leaves the others showing
        // the backing file; so the model tracks which clusters this layer holds (written, zeroed, or grown into).
        var inLayer = new bool[Size / ClusterSize];
        void Touch(long offset, long length)
        {
            for (long c = offset / ClusterSize; c <= (offset + length - 1) / ClusterSize; c++) inLayer[c] = true;
        }
        var history = new System.Collections.Concurrent.ConcurrentQueue<(long Offset, long Length, string What)>();

        void Fail(string message)
        {
            lock (failures) failures.Add(message);
            stop.Cancel();
        }

        async Task Writer(int w)
        {
            var rnd = new Random(1000 + w);
            long start = w * Region;
            while (clock.Elapsed < deadline && !stop.IsCancellationRequested)
            {
                long offset = start + rnd.NextInt64(Region - 1);
                int length = (int)Math.Min(start + Region - offset, rnd.Next(1, 3 * ClusterSize));
                await locks[w].WaitAsync();
                try
                {
                    switch (rnd.Next(10))
                    {
                        case < 5:
                            var data = new byte[length];
                            rnd.NextBytes(data);
                            await image.WriteAsync(offset, data);
                            data.CopyTo(model, offset);
                            Touch(offset, length);
                            history.Enqueue((offset, length, $"w{w} write {data[0]:x2}"));
                            Interlocked.Increment(ref counts[0]);
                            break;
                        case < 7:
                            ZeroingInPlace.Value = true;
                            try { await image.WriteZeroesAsync(offset, length); }
                            finally { ZeroingInPlace.Value = false; }
                            Array.Clear(model, (int)offset, length);
                            Touch(offset, length);
                            history.Enqueue((offset, length, $"w{w} zero"));
                            Interlocked.Increment(ref counts[1]);
                            break;
                        case < 8:
                            ZeroingInPlace.Value = true; // discard punches mapped clusters in place, as write-zeroes does
                            try { await image.DiscardAsync(offset, length); }
                            finally { ZeroingInPlace.Value = false; }
                            // Whole data clusters inside the range are punched out and read zeroes (over a backing file
                            // too); partial clusters are left alone.
                            long first = (offset + ClusterSize - 1) / ClusterSize * ClusterSize, end = (offset + length) / ClusterSize * ClusterSize;
                            for (long c = first; c < end; c += ClusterSize)
                                if (!withBacking || inLayer[c / ClusterSize]) Array.Clear(model, (int)c, ClusterSize);
                            history.Enqueue((offset, length, $"w{w} discard"));
                            Interlocked.Increment(ref counts[2]);
                            break;
                        case < 9:
                            await image.FlushAsync();
                            Interlocked.Increment(ref counts[3]);
                            break;
                        default:
                            await VerifyAsync(offset, length, $"writer {w}");
                            break;
                    }
                }
                catch (Exception e)
                {
                    Fail($"writer {w}: {e}");
                }
                finally { locks[w].Release(); }
            }
        }

        async Task VerifyAsync(long offset, int length, string who)
        {
            var read = new byte[length];
            await image.ReadAsync(offset, read);
            Interlocked.Increment(ref counts[4]);
            if (!read.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)))
            {
                int at = read.AsSpan().CommonPrefixLength(model.AsSpan((int)offset, length));
                long bad = offset + at;
                var ops = history.Where(h => h.Offset <= bad && bad < h.Offset + h.Length).Select(h => $"{h.What} [0x{h.Offset:x}, +0x{h.Length:x})");
                Fail($"{who}: guest 0x{bad:x} reads {read[at]:x2}, the model says {model[bad]:x2}; ops there: {string.Join(", ", ops)}");
            }
        }

        async Task Reader(int r)
        {
            var rnd = new Random(2000 + r);
            while (clock.Elapsed < deadline && !stop.IsCancellationRequested)
            {
                int w = rnd.Next(Writers);
                long offset = w * Region + rnd.NextInt64(Region - 1);
                int length = (int)Math.Min((w + 1) * Region - offset, rnd.Next(1, 16 * ClusterSize));
                await locks[w].WaitAsync();
                try { await VerifyAsync(offset, length, $"reader {r}"); }
                catch (Exception e) { Fail($"reader {r}: {e}"); }
                finally { locks[w].Release(); }
            }
        }

        async Task Maintenance()
        {
            var rnd = new Random(3000);
            try
            {
                while (clock.Elapsed < deadline && !stop.IsCancellationRequested)
                {
                    // Fill part of the shrink zone, so the shrink has clusters to free (in the middle of the file).
                    for (int i = 0; i < 64; i++)
                    {
                        long offset = Kept + rnd.NextInt64(Size - Kept - ClusterSize);
                        var data = new byte[rnd.Next(1, 2 * ClusterSize)];
                        rnd.NextBytes(data);
                        int n = (int)Math.Min(data.Length, Size - offset);
                        await image.WriteAsync(offset, data.AsMemory(0, n));
                        data.AsSpan(0, n).CopyTo(model.AsSpan((int)offset));
                        Touch(offset, n);
                    }
                    await image.DefragmentAsync();
                    Interlocked.Increment(ref counts[5]);
                    long cut = Kept + rnd.Next(0, 64) * 512; // sometimes inside a cluster
                    await image.ResizeAsync(cut, new ResizeOptions { AllowShrink = true });
                    Interlocked.Increment(ref counts[6]);
                    await image.ResizeAsync(Size, new ResizeOptions());
                    Interlocked.Increment(ref counts[7]);
                    Array.Clear(model, (int)cut, (int)(Size - cut)); // the grown range reads zeroes, backing or not
                    Touch(cut, Size - cut);
                    await VerifyAsync(Kept, (int)(Size - Kept), "maintenance");
                }
            }
            catch (Exception e)
            {
                Fail($"maintenance: {e}");
            }
        }

        var tasks = new List<Task>();
        for (int w = 0; w < Writers; w++) { int id = w; tasks.Add(Task.Run(() => Writer(id))); }
        for (int r = 0; r < 2; r++) { int id = r; tasks.Add(Task.Run(() => Reader(id))); }
        if (Environment.GetEnvironmentVariable("QED_STRESS_NOMAINT") is null) tasks.Add(Task.Run(Maintenance));
        await Task.WhenAll(tasks);

        string summary = $"{clock.Elapsed.TotalSeconds:F1} s: {counts[0]} writes, {counts[1]} zero writes, {counts[2]} discards, {counts[3]} flushes, " +
            $"{counts[4]} verified reads, {counts[5]} defrags, {counts[6]} shrinks, {counts[7]} grows; {storage.Punches} punches, {storage.Cuts} cuts";
        output.WriteLine(summary);
        Assert.True(failures.Count == 0, summary + "\n" + string.Join("\n", failures.Take(5)));
        Assert.True(storage.Violations.Count == 0, summary + "\n" + string.Join("\n", storage.Violations.Take(5)));
        Assert.True(counts[5] > 0 && counts[6] > 0 && counts[2] > 0 && counts[0] > 0, summary);

        // Quiet now: the whole image reads as the model, the check is clean, and a last defrag leaves the minimal layout.
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(image));
        await image.FlushAsync();
        await DefragLayout.AssertCleanAsync(memory, leaksAllowed: true);
        await image.DefragmentAsync();
        await DefragLayout.AssertDefragmentedAsync(image, memory);
        await DefragLayout.AssertCleanAsync(memory);
        await image.DisposeAsync();
        await using var reopened = await QedImage.OpenAsync(new MemoryStorage(memory.ToArray()), new ImageOpenOptions { ReadOnly = true }, opener);
        Assert.Equal(model, await Operations.OperationFixtures.ReadAllAsync(reopened));
    }
}
