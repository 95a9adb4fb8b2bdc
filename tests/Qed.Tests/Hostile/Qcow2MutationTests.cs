using System.Buffers.Binary;
using System.Diagnostics;
using Qed.Formats.Qcow2;
using Qed.Formats.Raw;
using Qed.Storage;
using Xunit.Abstractions;

namespace Qed.Tests.Hostile;

/// <summary>
/// Random bytes changed in the header, L1 and L2 tables, refcount table and refcount blocks of valid qcow2 images
/// (versions 2 and 3, 64 KiB, 4 KiB and 512-byte clusters, with and without a backing file); every open, read, map,
/// write, write-zeroes, discard, flush and close must work or fail with an allowed exception, within a time limit and
/// without allocating more at open than the file can justify. The rules are those of <see cref="MutationTests"/>:
/// <list type="bullet">
/// <item><see cref="ImageFormatException"/> from anything: the image is malformed.</item>
/// <item><see cref="ImageNeedsCheckException"/> from a write, discard or write-zeroes only: writes are refused after a
/// corruption was met.</item>
/// <item>One addition for qcow2: <see cref="NotSupportedException"/> from open only, for a header naming a feature
/// the library does not implement (encryption, an external data file, subclusters, zstd, internal snapshots or a dirty
/// bit when writing); such an image is well formed, just not supported.</item>
/// </list>
/// QED_QCOW2_MUTATION_ITERATIONS sets the count (default 4,000), QED_MUTATION_SEED the seed.
/// </summary>
public class Qcow2MutationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>Bytes that opening may allocate per byte of the file (tables are read twice: raw and decoded), plus a fixed allowance.</summary>
    private const long OpenBytesPerFileByte = 8;
    private const long OpenAllowance = 8L << 20;

    /// <summary>A valid image, the guest offsets it wrote, and the content of its backing file (null without one).</summary>
    private sealed record Sample(string Name, byte[] Bytes, long[] Written, byte[]? Backing);

    [Fact]
    public async Task MutatedQcow2ImagesFailOnlyWithFormatExceptions()
    {
        int iterations = int.TryParse(Environment.GetEnvironmentVariable("QED_QCOW2_MUTATION_ITERATIONS"), out int n) ? n : 4_000;
        int baseSeed = int.TryParse(Environment.GetEnvironmentVariable("QED_MUTATION_SEED"), out int s) ? s : 1;
        Sample[] samples =
        [
            await MakeAsync("v3-64k", 3, 65536, 1L << 30, [0, 1 << 20, 600L << 20], zeroAt: 512L << 20),
            await MakeAsync("v2-64k", 2, 65536, 1L << 30, [0, 1 << 20, 600L << 20], zeroAt: 512L << 20),
            await MakeAsync("v3-512", 3, 512, 4L << 20, [0, 40 << 10, 1 << 20, 3L << 20], zeroAt: 2L << 20),
            await MakeAsync("v2-512", 2, 512, 4L << 20, [0, 40 << 10, 1 << 20, 3L << 20], zeroAt: 2L << 20),
            await MakeAsync("v3-4k-backing", 3, 4096, 8L << 20, [0, 64 << 10, 4L << 20], zeroAt: 6L << 20, backing: true),
            await MakeAsync("v2-4k-backing", 2, 4096, 8L << 20, [0, 64 << 10, 4L << 20], zeroAt: 6L << 20, backing: true),
        ];
        var clock = Stopwatch.StartNew();
        var tally = await MutantRunner.RunAsync(iterations, baseSeed, Limit, (seed, outcome) => RunOneAsync(samples, seed, outcome));
        string summary = $"mutated qcow2 images: {iterations} (seed {baseSeed}) in {clock.Elapsed.TotalSeconds:F1} s; opened {tally.Opened}, " +
            $"format errors {tally.FormatErrors}, refused writes {tally.RefusedWrites}, unsupported {tally.Unsupported}, opens measured {tally.Measured}, unexpected {tally.Unexpected.Count}";
        output.WriteLine(summary);
        Console.WriteLine(summary);
        Assert.True(tally.Unexpected.Count == 0, summary + "\n" + string.Join("\n", tally.Unexpected.Take(20)));
        Assert.True(tally.Measured > iterations / 2, $"only {tally.Measured} of {iterations} opens ran on one thread, so memory went unmeasured");
    }

    /// <summary>Creates an image through the library and writes one pattern per offset (plus a zeroed megabyte and a discard).</summary>
    private static async Task<Sample> MakeAsync(string name, int version, int clusterSize, long size, long[] written, long zeroAt, bool backing = false)
    {
        var file = new MemoryStorage(name);
        byte[]? below = null;
        if (backing)
        {
            below = new byte[size / 2]; // shorter than the image: reads past its end are zeroes
            new Random(7).NextBytes(below);
        }
        await Qcow2Image.CreateAsync(file, new Qcow2CreateOptions
        {
            Size = size, Version = version, ClusterSize = clusterSize,
            BackingFile = backing ? "base.raw" : null, BackingFormat = backing ? ImageFormat.Raw : null, BackingCheck = backing ? BackingFileCheck.None : BackingFileCheck.Open,
        });
        await using (var image = await OpenAsync(file, Backing(below), readOnly: false))
        {
            for (int i = 0; i < written.Length; i++)
                await image.WriteAsync(written[i], SampleImages.Filled(3 * clusterSize / 2 + 100, (byte)(0x11 * (i + 1))));
            await image.WriteZeroesAsync(zeroAt, 1 << 20);
            await image.DiscardAsync(written[^1], clusterSize);
        }
        return new Sample(name, file.ToArray(), written, below);
    }

    private static MemoryStorage? Backing(byte[]? content) => content == null ? null : new MemoryStorage(content, "base.raw", access: FileAccess.Read);

    /// <summary>Opens with the backing file (whatever name the header gives) on <paramref name="backing"/>, raw.</summary>
    private static Task<Qcow2Image> OpenAsync(MemoryStorage file, MemoryStorage? backing, bool readOnly) =>
        Qcow2Image.OpenAsync(file, new ImageOpenOptions { ReadOnly = readOnly },
            backing == null ? null : (_, _, _) => Task.FromResult<DiskImage>(new RawImage(backing, readOnly: true)));

    /// <summary>Mutates one image and runs every operation on it; records what failed how.</summary>
    private static async Task RunOneAsync(Sample[] samples, int seed, MutantOutcome outcome)
    {
        await Task.Yield();
        var rnd = new Random(seed);
        var sample = samples[rnd.Next(samples.Length)];
        var bytes = (byte[])sample.Bytes.Clone();
        Mutate(bytes, rnd);
        if (rnd.Next(12) == 0) bytes = bytes[..rnd.Next(bytes.Length)];
        var file = new MemoryStorage(bytes, $"{sample.Name}-mutant-{seed}");
        var backing = Backing(sample.Backing); // made before the open is measured: its copy is the test's, not the open's
        string id = $"seed {seed} ({sample.Name})";
        outcome.Id = id;

        Task Try(string what, Func<Task> action, bool isWrite = false, bool isOpen = false) =>
            outcome.TryAsync(what, action, isWrite, unsupportedAllowed: isOpen);

        Qcow2Image? image = null;
        bool readOnly = rnd.Next(3) == 0;
        await Try("open", async () =>
        {
            // MemoryStorage completes synchronously, so an open that does not leave this thread allocates on it alone.
            int thread = Environment.CurrentManagedThreadId;
            long before = GC.GetAllocatedBytesForCurrentThread();
            var opening = OpenAsync(file, backing, readOnly);
            if (opening.IsCompleted && Environment.CurrentManagedThreadId == thread)
            {
                long used = GC.GetAllocatedBytesForCurrentThread() - before;
                outcome.Measured = true;
                if (used > OpenBytesPerFileByte * bytes.Length + OpenAllowance)
                    outcome.Unexpected.Add($"{id}: open allocated {used} bytes for a file of {bytes.Length} bytes");
            }
            image = await opening;
        }, isOpen: true);
        if (image != null)
        {
            outcome.Opened = true;
            long size = image.Size;
            var buffer = new byte[65536];
            await Try("read", async () =>
            {
                for (long at = 0; at < Math.Min(size, 256L << 10); at += buffer.Length)
                    await image.ReadAsync(at, buffer.AsMemory(0, (int)Math.Min(buffer.Length, size - at)));
            });
            foreach (long at in new[] { Pick(sample, size, rnd), Pick(sample, size, rnd) })
                if (at < size)
                    await Try("read", async () => await image.ReadAsync(at, buffer.AsMemory(0, (int)Math.Min(rnd.Next(1, buffer.Length), size - at))));
            await Try("map", async () =>
            {
                int extents = 0;
                await foreach (var _ in AllocationMap.EnumerateAsync(image, 0, size))
                    if (++extents > 2_000) break;
            });
            if (!readOnly && size > 0)
            {
                rnd.NextBytes(buffer);
                for (int w = 0; w < 4; w++)
                {
                    long at = Pick(sample, size, rnd);
                    if (at >= size) continue;
                    int length = (int)Math.Min(rnd.Next(4) == 0 ? rnd.Next(1, buffer.Length) : rnd.Next(1, 3) * 4096, size - at);
                    switch (rnd.Next(4))
                    {
                        case 0 or 1: await Try("write", async () => await image.WriteAsync(at, buffer.AsMemory(0, length)), isWrite: true); break;
                        case 2: await Try("write zeroes", async () => await image.WriteZeroesAsync(at, length), isWrite: true); break;
                        default: await Try("discard", async () => await image.DiscardAsync(at, length), isWrite: true); break;
                    }
                    if (rnd.Next(3) == 0) await Try("flush", async () => await image.FlushAsync());
                }
                await Try("flush", async () => await image.FlushAsync());
            }
            await Try("close", async () => await image.DisposeAsync());

            // Whatever this session wrote back must reopen and read without anything but a format error.
            if (!readOnly)
            {
                Qcow2Image? again = null;
                await Try("reopen", async () => again = await OpenAsync(file, backing, readOnly: true), isOpen: true);
                if (again != null)
                {
                    await Try("read after reopen", async () =>
                    {
                        long at = Math.Min(Pick(sample, again.Size, rnd), Math.Max(0, again.Size - 1));
                        await again.ReadAsync(at, buffer.AsMemory(0, (int)Math.Min(buffer.Length, again.Size - at)));
                    });
                    await Try("close after reopen", async () => await again.DisposeAsync());
                }
            }
        }
    }

    /// <summary>A guest offset: mostly near data the sample wrote, sometimes anywhere in the first 8 MiB or the whole image.</summary>
    private static long Pick(Sample sample, long size, Random rnd)
    {
        if (size <= 0) return 0;
        long at = rnd.Next(3) switch
        {
            0 => sample.Written[rnd.Next(sample.Written.Length)] + rnd.Next(-70000, 140000),
            1 => rnd.NextInt64(Math.Min(size, 8L << 20)),
            _ => rnd.NextInt64(size),
        };
        return Math.Clamp(at, 0, size - 1) & ~511L;
    }

    /// <summary>
    /// Changes 1 to 4 bytes: in the header and header cluster, in used L1 and L2 entries, in the refcount table and the
    /// refcount blocks it names, or anywhere before the first data.
    /// </summary>
    private static void Mutate(byte[] bytes, Random rnd)
    {
        ulong U64(long at) => at + 8 <= bytes.Length ? BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)at)) : 0;
        int clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(20));
        long cs = 1L << clusterBits;
        long l1 = (long)U64(40), refTable = (long)U64(48);
        int l1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(36));
        var hot = new List<long>();
        // Header fields worth hitting more often than their bytes' share.
        hot.AddRange([8, 16, 20, 24, 36, 40, 48, 56, 60, 64, 72, 96, 100]);
        for (int i = 0; i < Math.Min(l1Size, 4); i++)
        {
            hot.Add(l1 + 8L * i);
            long table = (long)(U64(l1 + 8L * i) & 0x00ff_ffff_ffff_fe00UL);
            if (table != 0 && table + cs <= bytes.Length)
                for (int j = 0; j < 12; j++) hot.Add(table + 8L * (j < 4 ? j : rnd.Next((int)(cs / 8))));
        }
        for (int i = 0; i < 4; i++)
        {
            hot.Add(refTable + 8L * i);
            long block = (long)(U64(refTable + 8L * i) & ~511UL);
            if (block != 0 && block + cs <= bytes.Length)
                for (int j = 0; j < 8; j++) hot.Add(block + (j < 4 ? 2L * j : rnd.Next((int)(cs / 2)) * 2L));
        }
        long metadataEnd = Math.Min(bytes.Length, Math.Max(l1 + 8L * l1Size, refTable + cs) + cs);
        int flips = rnd.Next(1, 5);
        for (int f = 0; f < flips; f++)
        {
            long at = rnd.Next(10) switch
            {
                < 3 => rnd.Next((int)Math.Min(cs, 1024)),        // header, extensions, backing name
                < 8 => hot[rnd.Next(hot.Count)] + rnd.Next(8),   // a field or a used entry
                _ => rnd.NextInt64(Math.Max(1, metadataEnd)),    // any metadata
            };
            if (at < 0 || at >= bytes.Length) continue;
            bytes[at] = rnd.Next(3) switch
            {
                0 => (byte)(bytes[at] ^ (1 << rnd.Next(8))),
                1 => (byte)rnd.Next(256),
                _ => rnd.Next(2) == 0 ? (byte)0 : (byte)0xff,
            };
        }
    }
}
