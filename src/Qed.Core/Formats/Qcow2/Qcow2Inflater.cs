using System.IO.Compression;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>
/// Reads compressed clusters: the host byte range a compressed L2 entry names, inflated (raw deflate) to one cluster.
/// </summary>
/// <remarks>Invariants: the result is exactly one cluster or an <see cref="ImageFormatException"/> naming the host
/// offset; the last cluster inflated is kept (entry and bytes, published as one immutable pair, lock-free), so
/// sequential small reads of one compressed cluster inflate it once. Returned arrays are never changed.</remarks>
internal sealed class Qcow2Inflater(IBlockStorage file, int clusterBits)
{
    private readonly int _clusterSize = 1 << clusterBits;
    private Tuple<ulong, byte[]>? _lastInflated;

    /// <summary>Decompresses one compressed cluster (raw deflate) into a new cluster-sized array.</summary>
    public async ValueTask<byte[]> InflateAsync(ulong entry, long host, CancellationToken ct)
    {
        var last = Volatile.Read(ref _lastInflated);
        if (last != null && last.Item1 == entry) return last.Item2;
        int compressedLength = Qcow2Entries.CompressedExtent(entry, clusterBits).Length;
        var compressed = new byte[compressedLength];
        await file.ReadAsync(host, compressed, ct).ConfigureAwait(false);
        var cluster = new byte[_clusterSize];
        int produced = 0;
        try
        {
            using var inflater = new DeflateStream(new MemoryStream(compressed, writable: false), CompressionMode.Decompress);
            while (produced < cluster.Length)
            {
                int n = inflater.Read(cluster, produced, cluster.Length - produced);
                if (n == 0) break;
                produced += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new ImageFormatException($"The compressed cluster at file offset 0x{host:x} ({compressedLength} bytes) is not valid deflate data: {e.Message}",
                "compressed_cluster", host, e);
        }
        if (produced < cluster.Length)
            throw new ImageFormatException($"The compressed cluster at file offset 0x{host:x} decompresses to {produced} bytes, not the cluster size {_clusterSize}",
                "compressed_cluster", host);
        Volatile.Write(ref _lastInflated, Tuple.Create(entry, cluster));
        return cluster;
    }
}
