using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>File storage in every cache mode: aligned and unaligned requests, from aligned and unaligned memory, plain
/// and durable writes, read back what was written (under none/directsync the aligned ones take the O_DIRECT handle).</summary>
public sealed class FileStorageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-storage").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [InlineData(CacheMode.WriteBack)]
    [InlineData(CacheMode.WriteThrough)]
    [InlineData(CacheMode.None)]
    [InlineData(CacheMode.DirectSync)]
    [InlineData(CacheMode.Unsafe)]
    public async Task MixedRequestsReadBackInEveryCacheMode(CacheMode cache)
    {
        string path = Path.Combine(_dir, $"{cache}.img");
        File.WriteAllBytes(path, new byte[8 << 20]);
        var model = new byte[8 << 20];
        var rnd = new Random((int)cache);
        await using (var storage = FileStorage.Open(path, writable: true, cache))
        {
            for (int i = 0; i < 200; i++)
            {
                bool aligned = rnd.Next(2) == 0;
                long offset = aligned ? rnd.Next(0, 2000) * 4096L : rnd.Next(0, (7 << 20));
                int length = aligned ? rnd.Next(1, 300) * 4096 : rnd.Next(1, 1 << 20);
                length = (int)Math.Min(length, model.Length - offset);
                var data = new byte[length + 1];
                rnd.NextBytes(data);
                var slice = data.AsMemory(rnd.Next(2), length); // sometimes unaligned memory too
                // Some writes are durable ones (the recovery record's): the same bytes land, through their own path.
                if (i % 7 == 3) await storage.WriteDurableAsync(offset, slice);
                else await storage.WriteAsync(offset, slice);
                slice.Span.CopyTo(model.AsSpan((int)offset));
                if (i % 50 == 0) await storage.FlushAsync();
            }
            var back = new byte[model.Length + 4096]; // reads past the end come back as zeroes
            await storage.ReadAsync(0, back);
            Assert.True(back.AsSpan(0, model.Length).SequenceEqual(model), "content read back differs");
            Assert.True(back.AsSpan(model.Length).IndexOfAnyExcept((byte)0) < 0, "bytes past the end are not zeroes");
            Assert.Equal(model.Length, storage.Length);
        }
        Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(model), "file on disk differs after close");
    }

    /// <summary>
    /// Buffered writes queue on one lane per file (WriteLane): many writers at once still each land whole, where
    /// they were sent, whatever order the lane runs them in.
    /// </summary>
    [Fact]
    public async Task ConcurrentWritersAllLand()
    {
        string path = Path.Combine(_dir, "lane.img");
        const int writers = 32, slot = 64 * 1024, perWriter = 40;
        var model = new byte[writers * perWriter * slot];
        await using (var storage = FileStorage.Create(path))
        {
            await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                var rnd = new Random(w);
                for (int i = 0; i < perWriter; i++)
                {
                    int at = (i * writers + w) * slot; // slots interleave across writers
                    var data = new byte[rnd.Next(1, slot + 1)];
                    rnd.NextBytes(data);
                    data.CopyTo(model, at);
                    await storage.WriteAsync(at, data).ConfigureAwait(false);
                }
            })));
        }
        Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(model.AsSpan(0, (int)new FileInfo(path).Length)), "content differs");
    }

    /// <summary>
    /// A write the kernel refuses (here past the largest file size) fails with that error, to its own caller only;
    /// the lane goes on with the writes queued beside it and after it.
    /// </summary>
    [Fact]
    public async Task AFailedWriteFailsAloneAndTheLaneGoesOn()
    {
        string path = Path.Combine(_dir, "fail.img");
        await using var storage = FileStorage.Create(path);
        var data = new byte[4096];
        new Random(3).NextBytes(data);
        var good1 = storage.WriteAsync(0, data).AsTask();
        var bad = storage.WriteAsync(long.MaxValue - 100, data).AsTask();
        var good2 = storage.WriteAsync(4096, data).AsTask();
        var limit = TimeSpan.FromSeconds(10); // a lane left stuck would hang here
        await Assert.ThrowsAnyAsync<IOException>(() => bad.WaitAsync(limit));
        await good1.WaitAsync(limit);
        await good2.WaitAsync(limit);
        await storage.WriteAsync(8192, data).AsTask().WaitAsync(limit);
        var back = new byte[3 * 4096];
        await storage.ReadAsync(0, back);
        for (int i = 0; i < 3; i++)
            Assert.True(back.AsSpan(i * 4096, 4096).SequenceEqual(data), $"block {i} did not land");
    }

    /// <summary>
    /// The lane runs the last queued write's continuation inline; code there that waits synchronously on another
    /// write (a Stream.Write after an await, say) must find a drainer to do it, not wait on itself.
    /// </summary>
    [Fact]
    public async Task ASynchronousWaitInsideAWriteContinuationDoesNotHang()
    {
        string path = Path.Combine(_dir, "sync.img");
        await using var storage = FileStorage.Create(path);
        for (int i = 0; i < 20; i++)
            Assert.True(await Task.Run(() => WriteThenWaitInsideTheContinuation(storage)), "a synchronous wait for a write inside a write's continuation hung");
    }

    private static async Task<bool> WriteThenWaitInsideTheContinuation(FileStorage storage)
    {
        var data = new byte[4096];
        await storage.WriteAsync(0, data).ConfigureAwait(false); // resumes on the lane's thread, inline
        return storage.WriteAsync(4096, data).AsTask().Wait(TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// Growing (how a QED image takes its next clusters) keeps what is there, reads as zeroes after it, never
    /// shrinks, and reserves the space on disk (fallocate) rather than leaving a hole, since writes into reserved
    /// space are cheaper for the kernel. /tmp filesystems here (ext4, tmpfs) all reserve; under QED_PORTABLE_IO
    /// (no fallocate) the growth is a hole instead.
    /// </summary>
    [Fact]
    public async Task GrowKeepsTheDataReservesTheSpaceAndNeverShrinks()
    {
        string path = Path.Combine(_dir, "grow.img");
        var head = new byte[100];
        new Random(7).NextBytes(head);
        File.WriteAllBytes(path, head);
        await using (var storage = FileStorage.Open(path, writable: true))
        {
            await storage.GrowAsync(1 << 20);
            Assert.Equal(1 << 20, storage.Length);
            await storage.GrowAsync(4096);
            Assert.Equal(1 << 20, storage.Length);
            var back = new byte[1 << 20];
            await storage.ReadAsync(0, back);
            Assert.True(back.AsSpan(0, 100).SequenceEqual(head), "the bytes before the growth changed");
            Assert.True(back.AsSpan(100).IndexOfAnyExcept((byte)0) < 0, "the grown range does not read as zeroes");
        }
        var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%b %B", path])
            { RedirectStandardOutput = true })!;
        var fields = (await stat.StandardOutput.ReadToEndAsync()).Split(' ');
        await stat.WaitForExitAsync();
        long allocated = long.Parse(fields[0]) * long.Parse(fields[1]);
        if (NativeFile.CanReserve) Assert.True(allocated >= 1 << 20, $"only {allocated} bytes are allocated on disk after growing to 1 MiB");
        else Assert.True(allocated < 1 << 20, $"{allocated} bytes are allocated on disk after growing to 1 MiB with reserving off");
    }

    /// <summary>
    /// Small buffered reads are first served from the page cache on the calling thread; large ones, and data not
    /// cached, go to the thread pool. Either way a read sees the bytes, and zeroes past the end of the file.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(128 * 1024)]      // the largest read tried from the cache
    [InlineData(128 * 1024 + 1)]  // the smallest read that is not
    public async Task ReadsSeeTheDataAndZeroesPastTheEndWhateverTheSize(int size)
    {
        string path = Path.Combine(_dir, $"read-{size}.img");
        var content = new byte[300_001];
        new Random(size).NextBytes(content);
        File.WriteAllBytes(path, content);
        await using var storage = FileStorage.Open(path, writable: false);
        foreach (long offset in new long[] { 0, 77, content.Length - size, content.Length - size / 2 - 1, content.Length, content.Length + 5000 })
        {
            if (offset < 0) continue;
            var buffer = new byte[size];
            buffer.AsSpan().Fill(0xee); // stale bytes that must all be overwritten
            await storage.ReadAsync(offset, buffer);
            int inFile = (int)Math.Clamp(content.Length - offset, 0, size);
            Assert.True(buffer.AsSpan(0, inFile).SequenceEqual(content.AsSpan((int)Math.Min(offset, content.Length), inFile)), $"data at {offset}");
            Assert.True(buffer.AsSpan(inFile).IndexOfAnyExcept((byte)0) < 0, $"past the end at {offset}");
        }
    }
}
