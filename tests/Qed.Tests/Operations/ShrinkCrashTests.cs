using Qed.Check;
using Qed.Operations;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Operations;

/// <summary>
/// The steps of an offline QED shrink (the online resize drops the mappings past the new end, writes the size and
/// punches the freed clusters; the defragmenter then moves clusters into the holes and truncates) under simulated
/// crashes: at every sync point, and at the end, the state a crash could
/// leave (what was synced, plus any subset of the writes and truncations since) has no corruption and reads the kept
/// range exactly as before.
/// </summary>
public class ShrinkCrashTests
{
    /// <summary>Storage that, at each flush, hands out a possible crash state: durable bytes plus a random subset of the pending operations.</summary>
    private sealed class CrashStorage(MemoryStorage inner, Random rnd, Action<byte[]> onCrashState) : IBlockStorage
    {
        private byte[] _durable = inner.ToArray();
        private readonly List<(long Offset, byte[]? Data, long Length)> _pending = new(); // Data null: set length
        private readonly Lock _lock = new();

        public string Name => inner.Name;
        public bool CanWrite => true;
        public long Length => inner.Length;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) => inner.ReadAsync(offset, buffer, ct);

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
        {
            await inner.WriteAsync(offset, data, ct);
            lock (_lock) _pending.Add((offset, data.ToArray(), 0));
        }

        public async ValueTask ZeroRangeAsync(long offset, long length, CancellationToken ct = default)
        {
            await inner.ZeroRangeAsync(offset, length, ct);
            lock (_lock) _pending.Add((offset, new byte[length], 0));
        }

        public async ValueTask SetLengthAsync(long length, CancellationToken ct = default)
        {
            await inner.SetLengthAsync(length, ct);
            lock (_lock) _pending.Add((0, null, length));
        }

        public async ValueTask FlushAsync(CancellationToken ct = default)
        {
            onCrashState(CrashState());
            await inner.FlushAsync(ct);
            lock (_lock)
            {
                _durable = inner.ToArray();
                _pending.Clear();
            }
        }

        public byte[] CrashState()
        {
            lock (_lock)
            {
                var state = new List<byte>(_durable);
                foreach (var (offset, data, length) in _pending)
                {
                    if (rnd.Next(2) == 0) continue;
                    if (data is null)
                    {
                        if (length < state.Count) state.RemoveRange((int)length, state.Count - (int)length);
                        else state.AddRange(new byte[length - state.Count]);
                        continue;
                    }
                    if (offset + data.Length > state.Count) state.AddRange(new byte[offset + data.Length - state.Count]);
                    for (int i = 0; i < data.Length; i++) state[(int)offset + i] = data[i];
                }
                return state.ToArray();
            }
        }

        public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken ct = default) =>
            inner.GetAllocationAsync(offset, maxLength, ct);
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Theory]
    [InlineData(1, 3L << 20)]
    [InlineData(2, 5L << 20)]
    [InlineData(3, 1L << 20)]
    [InlineData(4, 9L << 20)]
    public async Task EveryCrashStateOfAShrinkIsConsistentAndKeepsTheData(int seed, long newSize)
    {
        const long Size = 16L << 20;
        var storage = new MemoryStorage();
        await QedImage.CreateAsync(storage, new QedCreateOptions { Size = Size, ClusterSize = 4096, TableSize = 2 });
        var model = new byte[Size];
        await using (var image = await QedImage.OpenAsync(storage))
            await OperationFixtures.ScribbleAsync(image, model, seed, 40); // random order: data clusters scattered in the file
        long before = storage.Length;

        int states = 0;
        async Task Verify(byte[] state, bool final)
        {
            states++;
            var copy = new MemoryStorage(state);
            var result = await QedChecker.CheckAsync(copy, CheckRepair.None);
            Assert.True(result.Corruptions == 0 && result.CheckErrors == 0, $"crash state {states}: {string.Join("; ", result.Messages)}");
            if (final) Assert.Equal(0, result.Leaks);
            await using var image = await QedImage.OpenAsync(copy, new ImageOpenOptions { ReadOnly = true });
            Assert.True(image.Size == Size || image.Size == newSize, $"size {image.Size}");
            var read = new byte[newSize];
            await image.ReadAsync(0, read);
            Assert.True(read.AsSpan().SequenceEqual(model.AsSpan(0, (int)newSize)), $"crash state {states}: the kept range changed");
        }

        var rnd = new Random(seed);
        var pendingChecks = new List<byte[]>();
        var crash = new CrashStorage(storage, rnd, pendingChecks.Add);
        await using (var image = await QedImage.OpenAsync(crash)) // the steps of ResizeOperation's shrink
        {
            await image.ResizeAsync(newSize, new ResizeOptions { AllowShrink = true });
            await image.DefragmentAsync();
        }
        pendingChecks.Add(crash.CrashState());
        foreach (var state in pendingChecks) await Verify(state, final: false);
        await Verify(storage.ToArray(), final: true);
        Assert.True(states > 4);
        Assert.True(storage.Length < before, "the file shrank");
    }
}
