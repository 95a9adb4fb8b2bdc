using Qed.Check;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Hostile;

/// <summary>
/// Geometries whose tables would take a gigabyte each: refused before any table is read, which the test proves by what
/// the refusal allocates (a process-wide figure, so these run alone).
/// </summary>
[Collection(nameof(AllocationMeasurements))]
public class HugeTableGeometryTests
{
    /// <summary>
    /// 64 MiB clusters with 16-cluster tables: 1 GiB per table, named by a sparse file of 4 KiB on disk (QEMU refuses it
    /// with a size and cannot create it). Open and check refuse it before reading a table, naming the field.
    /// </summary>
    [Theory]
    [InlineData(1UL << 30, "image_size")]
    [InlineData(0UL, "table_size")]
    public async Task GeometriesWithHugeTablesAreRefusedBeforeAnyTableIsRead(ulong imageSize, string field)
    {
        const uint cs = 64u << 20, ts = 16;
        string path = Path.Combine(Directory.CreateTempSubdirectory("qed-hostile-").FullName, "huge.qed");
        try
        {
            var header = new byte[4096];
            new Qed.Formats.Qed.QedHeader
            {
                Magic = Qed.Formats.Qed.QedHeader.MagicValue, ClusterSize = cs, TableSize = ts, HeaderSize = 1,
                L1TableOffset = cs, ImageSize = imageSize,
            }.WriteTo(header);
            await using (var f = new FileStream(path, FileMode.CreateNew))
            {
                f.Write(header);
                f.SetLength((long)cs * (1 + ts));
            }
            long before = GC.GetTotalAllocatedBytes(precise: true);
            await using (var file = FileStorage.Open(path, writable: false))
            {
                var error = await Assert.ThrowsAsync<ImageFormatException>(() => QedImage.OpenAsync(file));
                Assert.Equal(field, error.Field);
                // The message is qemu's bare words; the value and rule are in the inner exception.
                Assert.Contains("1073741824", error.InnerException?.Message);
                var checkError = await Assert.ThrowsAsync<ImageFormatException>(() => QedChecker.CheckAsync(file, CheckRepair.None));
                Assert.Equal(field, checkError.Field);
            }
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            Assert.True(allocated < 16L << 20, $"refusing the image allocated {allocated} bytes");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }
}
