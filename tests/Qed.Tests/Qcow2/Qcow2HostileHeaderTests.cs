using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Storage;

namespace Qed.Tests.Qcow2;

/// <summary>Malformed qcow2 images give an ImageFormatException naming the field, never a crash or an unbounded allocation.</summary>
public sealed class Qcow2HostileHeaderTests
{
    private static async Task<MemoryStorage> NewImageAsync(int version = 3, long size = 8 << 20, string? backing = null)
    {
        var storage = new MemoryStorage("hostile.qcow2");
        await Qcow2Image.CreateAsync(storage, new Qcow2CreateOptions { Size = size, Version = version, BackingFile = backing, BackingCheck = BackingFileCheck.None });
        return storage;
    }

    private static async Task PatchAsync(MemoryStorage s, long offset, ulong value, int bytes)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        await s.WriteAsync(offset, b.AsMemory(8 - bytes));
    }

    private static async Task<ImageFormatException> OpenFailsAsync(MemoryStorage s, string field)
    {
        var e = await Assert.ThrowsAsync<ImageFormatException>(() => Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true }));
        Assert.Equal(field, e.Field);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Theory]
    [InlineData(4, 4UL, 4, "version")]
    [InlineData(4, 1UL, 4, "version")]
    [InlineData(20, 8UL, 4, "cluster_bits")]
    [InlineData(20, 31UL, 4, "cluster_bits")]
    [InlineData(100, 100UL, 4, "header_length")]
    [InlineData(100, 113UL, 4, "header_length")]
    [InlineData(36, 0UL, 4, "l1_size")]
    [InlineData(36, 0x10000000UL, 4, "l1_size")]
    [InlineData(40, 0x30001UL, 8, "l1_table_offset")]
    [InlineData(40, 0x7000000UL, 8, "l1_table_offset")]
    [InlineData(40, 0UL, 8, "l1_table_offset")]
    [InlineData(48, 0x123UL, 8, "refcount_table_offset")]
    [InlineData(48, 1UL << 50, 8, "refcount_table_offset")]
    [InlineData(56, 0UL, 4, "refcount_table_clusters")]
    [InlineData(56, 0xffffffffUL, 4, "refcount_table_clusters")]
    [InlineData(60, 5UL, 4, "snapshots_offset")]
    [InlineData(96, 7UL, 4, "refcount_order")]
    [InlineData(24, ulong.MaxValue, 8, "size")]
    [InlineData(24, 1UL << 40, 8, "l1_size")]
    [InlineData(72, 1UL << 5, 8, "incompatible_features")]
    [InlineData(72, 1UL << 63, 8, "incompatible_features")]
    [InlineData(0, 0x514649fcUL, 4, "magic")]
    public async Task HostileHeaderFieldsAreRefused(int offset, ulong value, int bytes, string field)
    {
        var s = await NewImageAsync();
        await PatchAsync(s, offset, value, bytes);
        await OpenFailsAsync(s, field);
    }

    [Fact]
    public async Task UnknownIncompatibleFeatureIsNamedFromTheFeatureTable()
    {
        var s = await NewImageAsync();
        // A feature name table (type 0x6803f857) naming incompatible bit 9, where our end marker was.
        var ext = new byte[8 + 48 + 8];
        BinaryPrimitives.WriteUInt32BigEndian(ext, Qcow2HeaderExtensions.FeatureNameTableType);
        BinaryPrimitives.WriteUInt32BigEndian(ext.AsSpan(4), 48);
        ext[8] = 0;
        ext[9] = 9;
        "time travel"u8.CopyTo(ext.AsSpan(10));
        await s.WriteAsync(Qcow2Header.V3WrittenLength, ext);
        await PatchAsync(s, 72, 1UL << 9, 8);
        var e = await OpenFailsAsync(s, "incompatible_features");
        Assert.Contains("time travel (bit 9)", e.Message);
    }

    [Fact]
    public async Task HeaderExtensionRunningPastTheClusterIsRefused()
    {
        var s = await NewImageAsync();
        var ext = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(ext, 0x12345678);
        BinaryPrimitives.WriteUInt32BigEndian(ext.AsSpan(4), 70000);
        await s.WriteAsync(Qcow2Header.V3WrittenLength, ext);
        await OpenFailsAsync(s, "header_extension");
    }

    [Fact]
    public async Task BackingNameOutsideTheFirstClusterIsRefused()
    {
        var s = await NewImageAsync(backing: "base.img");
        await PatchAsync(s, 8, 65530, 8);
        await OpenFailsAsync(s, "backing_file_offset");
        await PatchAsync(s, 8, 200, 8);
        await PatchAsync(s, 16, 5000, 4);
        await OpenFailsAsync(s, "backing_file_size");
    }

    [Theory]
    [InlineData(0xffff_ffff_ffff_fff8UL, 8U)]  // offset + size wraps to 0
    [InlineData(0xffff_ffff_ffff_ff00UL, 0x200U)] // wraps to 0x100, inside the first cluster
    [InlineData(0x8000_0000_0000_0000UL, 8U)]
    public async Task WrappingBackingNameOffsetIsRefusedNamingIt(ulong offset, uint size)
    {
        var s = await NewImageAsync(backing: "base.img");
        await PatchAsync(s, 8, offset, 8);
        await PatchAsync(s, 16, size, 4);
        var e = await OpenFailsAsync(s, "backing_file_offset");
        Assert.Contains($"0x{offset:x}", e.Message);
        Assert.Contains($"{size} bytes", e.Message);
    }

    [Fact]
    public async Task TruncatedSnapshotTableIsRefused()
    {
        var s = await NewImageAsync();
        // One snapshot whose entry claims 60000 bytes of extra data, at the last cluster of the file.
        long at = (s.Length + 65535) / 65536 * 65536;
        var entry = new byte[40];
        BinaryPrimitives.WriteUInt32BigEndian(entry.AsSpan(36), 60000);
        await s.WriteAsync(at, entry);
        await PatchAsync(s, 60, 1, 4);
        await PatchAsync(s, 64, (ulong)at, 8);
        await OpenFailsAsync(s, "snapshot[0]");
    }

    [Fact]
    public async Task EncryptionAndUnsupportedFeaturesAreNotSupported()
    {
        foreach (var (offset, value, bytes) in new[] { (32, 1UL, 4), (72, 4UL, 8), (72, 16UL, 8) })
        {
            var s = await NewImageAsync();
            await PatchAsync(s, offset, value, bytes);
            await Assert.ThrowsAsync<NotSupportedException>(() => Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true }));
        }
    }

    [Fact]
    public async Task DirtyOrCorruptImagesOpenReadOnlyButNotForWriting()
    {
        var s = await NewImageAsync();
        await PatchAsync(s, 72, 1, 8);
        await using (var ro = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true })) Assert.True(ro.IsDirty);
        await Assert.ThrowsAsync<NotSupportedException>(() => Qcow2Image.OpenAsync(s));
        await PatchAsync(s, 72, 2, 8);
        var e = await Assert.ThrowsAsync<ImageFormatException>(() => Qcow2Image.OpenAsync(s));
        Assert.Contains("corrupt", e.Message);
    }

    /// <summary>Makes an image with one written cluster and returns its storage and the L1 and L2 table offsets.</summary>
    private static async Task<(MemoryStorage Storage, long L1, long L2)> WrittenImageAsync()
    {
        var s = await NewImageAsync();
        await using (var img = await Qcow2Image.OpenAsync(s))
            await img.WriteAsync(0, new byte[4096]);
        var head = new byte[112];
        await s.ReadAsync(0, head);
        long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(40));
        var e = new byte[8];
        await s.ReadAsync(l1, e);
        return (s, l1, (long)(BinaryPrimitives.ReadUInt64BigEndian(e) & 0x00ff_ffff_ffff_fe00UL));
    }

    [Theory]
    [InlineData(0x8000000000000000UL | 0x7777000, "L1[0]")]     // unaligned L2 table
    [InlineData(0x8000000000000000UL | 0x4000000000, "L1[0]")]  // past the end of the file
    [InlineData(0x8000000000000000UL | 0x200, "L1[0]")]         // inside the header
    public async Task HostileL1EntriesFailReadsWithTheirField(ulong entry, string field)
    {
        var (s, l1, _) = await WrittenImageAsync();
        await PatchAsync(s, l1, entry, 8);
        await using var img = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await img.ReadAsync(0, new byte[512]));
        Assert.Equal(field, e.Field);
        Assert.Equal(l1, e.FileOffset);
    }

    [Theory]
    [InlineData(0x8000000000000000UL | 0x5000000000)] // past the end of the file
    [InlineData(0x8000000000000000UL | 0x40200)]      // unaligned
    [InlineData(0x0100000000000000UL | 0x40000)]      // reserved bit
    [InlineData(0x8000000000000000UL)]                // offset 0 with the copied flag
    [InlineData(0x4000000000000000UL | 0x5000000000)] // compressed, past the end of the file
    public async Task HostileL2EntriesFailReadsWithTheirField(ulong entry)
    {
        var (s, _, l2) = await WrittenImageAsync();
        await PatchAsync(s, l2 + 8, entry, 8);
        await using var img = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await img.ReadAsync(65536, new byte[512]));
        Assert.Equal("L2[0][1]", e.Field);
        Assert.Equal(l2 + 8, e.FileOffset);
        await img.ReadAsync(0, new byte[512]); // the good entry still reads
    }

    [Fact]
    public async Task GarbageCompressedClusterFailsWithItsOffset()
    {
        var (s, _, l2) = await WrittenImageAsync();
        long garbage = s.Length;
        var junk = new byte[1024];
        new Random(1).NextBytes(junk);
        await s.WriteAsync(garbage, junk);
        // compressed, one extra sector, at `garbage`
        await PatchAsync(s, l2 + 8, 0x4000000000000000UL | (1UL << 54) | (ulong)garbage, 8);
        await using var img = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await img.ReadAsync(65536, new byte[512]));
        Assert.Equal("compressed_cluster", e.Field);
        Assert.Equal(garbage, e.FileOffset);
    }

    [Fact]
    public async Task ZeroFlagInVersion2IsRefused()
    {
        var s = await NewImageAsync(version: 2);
        await using (var img = await Qcow2Image.OpenAsync(s)) await img.WriteAsync(0, new byte[100]);
        var head = new byte[72];
        await s.ReadAsync(0, head);
        var e8 = new byte[8];
        await s.ReadAsync((long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(40)), e8);
        long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(e8) & 0x00ff_ffff_ffff_fe00UL);
        await PatchAsync(s, l2 + 16, 1, 8);
        await using var ro = await Qcow2Image.OpenAsync(s, new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAsync<ImageFormatException>(async () => await ro.ReadAsync(2 * 65536, new byte[512]));
        Assert.Equal("L2[0][2]", e.Field);
    }

    [Fact]
    public async Task ShortAndEmptyFilesAreRefused()
    {
        var s = new MemoryStorage("short");
        await s.WriteAsync(0, new byte[] { 0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3 });
        await OpenFailsAsync(s, "magic");
    }
}
