using System.Security.Cryptography;
using Qed.Formats.Qcow2;
using Qed.Formats.Qed;

namespace Qed.Tests.ImageFileJobs;

/// <summary>A scratch folder of real image files for the <see cref="ImageFile"/> tests, removed afterwards.</summary>
public abstract class ImageFileFixture : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-imagefile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    protected string P(string name) => Path.Combine(_dir, name);

    protected const long Size = 8 << 20;

    /// <summary>A QED image of <paramref name="size"/> bytes with each run written as <c>(offset, length, fill)</c>.</summary>
    protected async Task<string> QedAsync(string name, long size = Size, string? backing = null, params (long Offset, int Length, byte Fill)[] writes)
    {
        await QedImage.CreateAsync(P(name), new QedCreateOptions { Size = size, BackingFile = backing, BackingFormat = backing is null ? null : ImageFormat.Qed });
        await WriteAsync(name, writes);
        return P(name);
    }

    protected async Task<string> Qcow2Async(string name, long size = Size, params (long Offset, int Length, byte Fill)[] writes)
    {
        await Qcow2Image.CreateAsync(P(name), new Qcow2CreateOptions { Size = size });
        await WriteAsync(name, writes);
        return P(name);
    }

    protected async Task WriteAsync(string name, params (long Offset, int Length, byte Fill)[] writes)
    {
        await using var image = await DiskImage.OpenAsync(P(name));
        foreach (var (offset, length, fill) in writes)
        {
            var data = new byte[length];
            Array.Fill(data, fill);
            await image.WriteAsync(offset, data);
        }
    }

    /// <summary>The guest content of the image at <paramref name="path"/>, through its chain.</summary>
    protected static async Task<byte[]> ContentAsync(string path)
    {
        await using var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true });
        var all = new byte[image.Size];
        await image.ReadAsync(0, all);
        return all;
    }

    protected static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Collects reports as they come, on the reporting thread (Progress&lt;T&gt; would post them late).</summary>
    protected sealed class Reports(Action<ImageProgress>? onReport = null) : IProgress<ImageProgress>
    {
        private readonly List<ImageProgress> _list = new();

        public IReadOnlyList<ImageProgress> All { get { lock (_list) return _list.ToArray(); } }

        public void Report(ImageProgress value)
        {
            lock (_list) _list.Add(value);
            onReport?.Invoke(value);
        }

        /// <summary>Asserts the job reported its start (0 done) and its end (all done), and never more than the total.</summary>
        public void AssertStartAndEnd(long total)
        {
            var all = All;
            Assert.NotEmpty(all);
            Assert.Equal(new ImageProgress(0, total), all[0]);
            Assert.Equal(total, all.Max(p => p.BytesDone));
            Assert.All(all, p => Assert.Equal(total, p.TotalBytes));
        }
    }
}
