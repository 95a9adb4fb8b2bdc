using System.Buffers.Binary;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Hostile;

/// <summary>Small valid images to corrupt, with the offsets of their tables and data read back from the file.</summary>
internal static class SampleImages
{
    /// <summary>
    /// 4 KiB clusters, 2-cluster tables (one L2 table maps 4 MiB), 8 MiB: guest 0 (0xa1), guest 64 KiB (0xb2) and
    /// guest 4 MiB (0xc3), one cluster each, so there are two L2 tables and three data clusters.
    /// </summary>
    public static async Task<byte[]> TwoTablesAsync(bool backingName = false)
    {
        var file = new MemoryStorage();
        await QedImage.CreateAsync(file, new QedCreateOptions
        {
            Size = 8L << 20, ClusterSize = 4096, TableSize = 2,
            BackingFile = backingName ? "base.raw" : null, BackingFormat = backingName ? ImageFormat.Raw : null, BackingCheck = backingName ? BackingFileCheck.None : BackingFileCheck.Open,
        });
        await using (var image = await QedImage.OpenAsync(file))
        {
            await image.WriteAsync(0, Filled(4096, 0xa1));
            await image.WriteAsync(64 << 10, Filled(4096, 0xb2));
            await image.WriteAsync(4L << 20, Filled(4096, 0xc3));
        }
        return file.ToArray();
    }

    /// <summary>Default geometry (64 KiB clusters, 4-cluster tables), 1 GiB, three writes and a zeroed range.</summary>
    public static async Task<byte[]> DefaultGeometryAsync()
    {
        var file = new MemoryStorage();
        await QedImage.CreateAsync(file, new QedCreateOptions { Size = 1L << 30 });
        await using (var image = await QedImage.OpenAsync(file))
        {
            await image.WriteAsync(0, Filled(65536, 0xab));
            await image.WriteAsync(1 << 20, Filled(4096, 0xcd));
            await image.WriteAsync(1023L << 20, Filled(65536, 0x11));
            await image.WriteZeroesAsync(512L << 20, 1 << 20);
        }
        return file.ToArray();
    }

    public static byte[] Filled(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }

    public static ulong U64(byte[] image, long offset) => BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan((int)offset));

    public static void Poke(byte[] image, long offset, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan((int)offset), value);

    public static void Poke32(byte[] image, long offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((int)offset), value);

    /// <summary>File offset of the L1 table.</summary>
    public static long L1(byte[] image) => (long)U64(image, 40);

    /// <summary>File offset of L1 entry <paramref name="i"/>.</summary>
    public static long L1Entry(byte[] image, int i) => L1(image) + 8L * i;

    /// <summary>File offset of entry <paramref name="j"/> of the L2 table under L1 entry <paramref name="i"/>.</summary>
    public static long L2Entry(byte[] image, int i, int j) => (long)U64(image, L1Entry(image, i)) + 8L * j;
}
