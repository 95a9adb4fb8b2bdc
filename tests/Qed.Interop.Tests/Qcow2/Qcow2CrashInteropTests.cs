using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Interop.Tests.Qcow2;

/// <summary>
/// Crash consistency: at every sync the test takes the state a crash could leave (the last synced bytes plus a random
/// subset of the writes since), and checks that qemu-img check finds no corruption there (leaks are allowed) and that
/// everything acknowledged by a completed FlushAsync reads back intact.
/// </summary>
public sealed class Qcow2CrashInteropTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Storage that remembers the durable state and the writes made since the last sync.</summary>
    private sealed class CrashStorage(MemoryStorage inner, Random rnd, Action<byte[]> onCrashState) : IBlockStorage
    {
        private byte[] _durable = inner.ToArray();
        private readonly List<(long Offset, byte[] Data)> _pending = new();
        private readonly object _lock = new();

        public string Name => inner.Name;
        public bool CanWrite => true;
        public long Length => inner.Length;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) => inner.ReadAsync(offset, buffer, ct);

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            await inner.WriteAsync(offset, data, ct);
            lock (_lock) _pending.Add((offset, data.ToArray()));
        }

        public async ValueTask ZeroRangeAsync(long offset, long length, CancellationToken ct = default)
        {
            await inner.ZeroRangeAsync(offset, length, ct);
            lock (_lock) _pending.Add((offset, new byte[length]));
        }

        public async ValueTask FlushAsync(CancellationToken ct = default)
        {
            byte[] crash;
            lock (_lock)
            {
                long length = Math.Max(_durable.Length, _pending.Count == 0 ? 0 : _pending.Max(p => p.Offset + p.Data.Length));
                crash = new byte[length];
                _durable.CopyTo(crash, 0);
                foreach (var (offset, data) in _pending)
                    if (rnd.Next(2) == 0) data.CopyTo(crash, offset);
            }
            onCrashState(crash);
            await inner.FlushAsync(ct);
            lock (_lock)
            {
                _durable = inner.ToArray();
                _pending.Clear();
            }
        }

        public ValueTask SetLengthAsync(long length, CancellationToken ct = default) => throw new NotSupportedException();
        public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken ct = default) =>
            inner.GetAllocationAsync(offset, maxLength, ct);
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Theory]
    [InlineData(3, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    public async Task EveryCrashStateIsConsistentAndKeepsFlushedData(int version, bool withBacking)
    {
        const int size = 4 << 20;
        var rnd = new Random(version * 10 + (withBacking ? 1 : 0));
        string basePath = _dir["base.raw"];
        var model = new byte[size];
        if (withBacking)
        {
            rnd.NextBytes(model);
            await File.WriteAllBytesAsync(basePath, model);
        }
        var memory = new MemoryStorage(_dir["img.qcow2"]);
        // Disposing the image leaves the MemoryStorage's bytes in place for the crash storage below.
        await (await DiskImage.CreateAsync(memory, ImageFormat.Qcow2, new Qcow2CreateOptions
        {
            Size = size, ClusterSize = 4096, Version = version, BackingFile = withBacking ? basePath : null, BackingFormat = withBacking ? ImageFormat.Raw : null,
        })).DisposeAsync();

        byte[] flushedModel = (byte[])model.Clone();
        var touched = new bool[size];
        var states = new List<(byte[] Image, byte[] Flushed, bool[] Touched)>();
        var storage = new CrashStorage(memory, rnd, crash =>
        {
            lock (states) states.Add((crash, (byte[])flushedModel.Clone(), (bool[])touched.Clone()));
        });

        DiskImage? backing = withBacking ? await DiskImage.OpenAsync(basePath, new ImageOpenOptions { Format = ImageFormat.Raw, ReadOnly = true }) : null;
        await using (var img = await Qcow2Image.OpenAsync(storage, null, (_, _, _) => Task.FromResult(backing!)))
        {
            for (int round = 0; round < 12; round++)
            {
                for (int i = 0; i < 15; i++)
                {
                    long off = rnd.NextInt64(0, size);
                    int len = (int)Math.Min(rnd.Next(1, 40000), size - off);
                    if (rnd.Next(5) == 0)
                    {
                        await img.WriteZeroesAsync(off, len);
                        Array.Clear(model, (int)off, len);
                    }
                    else
                    {
                        var data = new byte[len];
                        rnd.NextBytes(data);
                        await img.WriteAsync(off, data);
                        data.CopyTo(model, off);
                    }
                    Array.Fill(touched, true, (int)off, len);
                }
                await img.FlushAsync();
                flushedModel = (byte[])model.Clone();
                Array.Clear(touched);
            }
        }

        Assert.True(states.Count > 12, $"expected many sync points, saw {states.Count}");
        int checkedStates = 0;
        foreach (var (image, flushed, wasTouched) in states.Where((_, i) => i % 3 == 0))
        {
            string path = _dir[$"crash{checkedStates++}.qcow2"];
            await File.WriteAllBytesAsync(path, image);
            var (exit, output) = QemuImg.Run("qemu-img", "check", path);
            Assert.True(exit is 0 or 3, $"crash state {checkedStates}: qemu-img check exited {exit} (corruption): {output}");
            await using var ro = await Qcow2Image.OpenAsync(FileStorage.Open(path, FileAccess.Read), new ImageOpenOptions { ReadOnly = true },
                (_, _, _) => DiskImage.OpenAsync(basePath, new ImageOpenOptions { Format = ImageFormat.Raw, ReadOnly = true }));
            var actual = new byte[size];
            await ro.ReadAsync(0, actual);
            for (int i = 0; i < size; i++)
                if (!wasTouched[i] && actual[i] != flushed[i])
                    Assert.Fail($"crash state {checkedStates}: flushed byte {i} reads {actual[i]}, expected {flushed[i]}");
            File.Delete(path);
        }
    }
}
