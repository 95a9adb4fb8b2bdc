using System.Buffers.Binary;
using System.Text;

namespace Qed.Formats.Qcow2;

/// <summary>The header extensions this library reads: the backing format name and the feature name table.</summary>
internal sealed class Qcow2HeaderExtensions
{
    /// <summary>Type of the end-of-extensions marker.</summary>
    public const uint EndType = 0;
    /// <summary>Type of the backing file format name extension.</summary>
    public const uint BackingFormatType = 0xe2792aca;
    /// <summary>Type of the feature name table extension.</summary>
    public const uint FeatureNameTableType = 0x6803f857;

    /// <summary>The backing file's format, or null when the image does not record it (then it is probed).</summary>
    public string? BackingFormat { get; private init; }

    /// <summary>Names of incompatible features (bit number → name), from the feature name table.</summary>
    public IReadOnlyDictionary<int, string> IncompatibleFeatureNames { get; private init; } = new Dictionary<int, string>();

    /// <summary>Where the extension area ends (the offset after the end marker, or the limit).</summary>
    public int End { get; private init; }

    /// <summary>
    /// Parses the extensions that start at <paramref name="start"/> in the first cluster and must end before
    /// <paramref name="limit"/> (the backing file name, or the cluster end).
    /// </summary>
    /// <exception cref="ImageFormatException">An extension runs past the limit.</exception>
    public static Qcow2HeaderExtensions Parse(ReadOnlySpan<byte> cluster, int start, int limit)
    {
        string? backingFormat = null;
        var names = new Dictionary<int, string>();
        int at = start;
        while (at + 8 <= limit)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster[at..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster[(at + 4)..]);
            if (type == EndType) return new Qcow2HeaderExtensions { BackingFormat = backingFormat, IncompatibleFeatureNames = names, End = at + 8 };
            if (length > (uint)(limit - at - 8))
                throw new ImageFormatException(
                    $"qcow2 header extension 0x{type:x8} at file offset {at} has length {length}, which runs past the header area ending at {limit}",
                    "header_extension", at);
            var data = cluster.Slice(at + 8, (int)length);
            switch (type)
            {
                case BackingFormatType:
                    backingFormat = Encoding.UTF8.GetString(data);
                    break;
                case FeatureNameTableType:
                    for (int i = 0; i + 48 <= data.Length; i += 48)
                    {
                        if (data[i] != 0) continue; // only incompatible feature names are used, for error messages
                        var name = data.Slice(i + 2, 46);
                        int nul = name.IndexOf((byte)0);
                        names[data[i + 1]] = Encoding.UTF8.GetString(nul < 0 ? name : name[..nul]);
                    }
                    break;
            }
            at += 8 + (int)((length + 7) & ~7u);
        }
        return new Qcow2HeaderExtensions { BackingFormat = backingFormat, IncompatibleFeatureNames = names, End = Math.Min(at, limit) };
    }

    /// <summary>Parses the extensions of the header cluster <paramref name="cluster"/>: from the header's end up to the backing name.</summary>
    public static Qcow2HeaderExtensions FromFirstCluster(byte[] cluster, Qcow2Header header)
    {
        int start = (int)header.HeaderLength;
        int limit = cluster.Length;
        // The backing name sits after the extensions; they must not run into it.
        if (header.HasBackingFile && header.BackingFileOffset >= (ulong)start && header.BackingFileOffset < (ulong)limit)
            limit = (int)header.BackingFileOffset;
        return Qcow2HeaderExtensions.Parse(cluster, start, limit);
    }
}
