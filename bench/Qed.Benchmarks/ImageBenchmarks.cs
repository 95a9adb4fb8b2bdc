using BenchmarkDotNet.Attributes;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Benchmarks;

/// <summary>
/// The per-request cost of the QED layer on cached metadata: offset translation, a 4 KiB read and an in-place 4 KiB
/// write, over memory (so the figure is ours, not the kernel's) and over a file in the page cache.
/// </summary>
[MemoryDiagnoser]
public class ImageBenchmarks
{
    private const long Size = 256L << 20;
    private readonly byte[] _buffer = new byte[4096];
    private QedImage _memory = null!;
    private QedImage _file = null!;
    private string _dir = null!;
    private long _offset;

    [GlobalSetup]
    public async Task Setup()
    {
        _memory = (QedImage)await DiskImage.CreateAsync(new MemoryStorage(), ImageFormat.Qed, new QedCreateOptions { Size = Size });
        _dir = Directory.CreateTempSubdirectory("qed-bench").FullName;
        string path = Path.Combine(_dir, "b.qed");
        _file = (QedImage)await DiskImage.CreateAsync(path, ImageFormat.Qed, new QedCreateOptions { Size = Size });
        var chunk = new byte[1 << 20];
        for (long at = 0; at < Size; at += chunk.Length)
        {
            await _memory.WriteAsync(at, chunk);
            await _file.WriteAsync(at, chunk);
        }
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _memory.DisposeAsync();
        await _file.DisposeAsync();
        Directory.Delete(_dir, true);
    }

    private long NextOffset() => _offset = (_offset + 4096 * 1021) % Size;

    [Benchmark]
    public ValueTask<LayerExtent> TranslateOffset() => _memory.GetLayerExtentAsync(NextOffset(), 4096);

    [Benchmark]
    public ValueTask Read4KMemory() => _memory.ReadAsync(NextOffset(), _buffer);

    [Benchmark]
    public ValueTask Write4KInPlaceMemory() => _memory.WriteAsync(NextOffset(), _buffer);

    [Benchmark]
    public async Task Read4KFile() => await _file.ReadAsync(NextOffset(), _buffer);

    [Benchmark]
    public async Task Write4KInPlaceFile() => await _file.WriteAsync(NextOffset(), _buffer);
}
