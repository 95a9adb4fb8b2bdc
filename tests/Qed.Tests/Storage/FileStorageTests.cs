using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>File storage in every cache mode: aligned and unaligned requests, from aligned and unaligned memory,
/// read back what was written (under none/directsync the aligned ones take the O_DIRECT handle).</summary>
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
                await storage.WriteAsync(offset, slice);
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
}
