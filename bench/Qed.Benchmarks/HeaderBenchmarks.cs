using BenchmarkDotNet.Attributes;
using Qed.Formats.Qed;

namespace Qed.Benchmarks;

/// <summary>Parsing and validating the 64-byte header: paid on every open.</summary>
[MemoryDiagnoser]
public class HeaderBenchmarks
{
    private readonly byte[] _bytes = new byte[QedHeader.Size];

    [GlobalSetup]
    public void Setup() => new QedHeader
    {
        Magic = QedHeader.MagicValue, ClusterSize = 65536, TableSize = 4, HeaderSize = 1,
        L1TableOffset = 65536, ImageSize = 1UL << 40,
    }.WriteTo(_bytes);

    [Benchmark]
    public uint ParseAndValidate()
    {
        var header = QedHeader.Parse(_bytes);
        header.Validate(5 * 65536);
        return header.ClusterSize;
    }
}
