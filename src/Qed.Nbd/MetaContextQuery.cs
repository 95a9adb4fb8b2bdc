using System.Buffers.Binary;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// The data of LIST_META_CONTEXT and SET_META_CONTEXT: an export name and the context queries, parsed from the
/// option's bytes with every length checked against what is there, and the contexts the queries select.
/// </summary>
internal static class MetaContextQuery
{
    /// <summary>
    /// Parses the option data; null (with the option error and its message) when it is malformed, too large, or a
    /// name is not valid UTF-8.
    /// </summary>
    public static (string Export, List<string> Queries)? Parse(byte[] data, out uint error, out string message)
    {
        error = NbdRep.ErrInvalid;
        message = "malformed meta context request";
        if (data.Length < 8) return null;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > NbdLimits.MaxString || 4 + (long)nameLength + 4 > data.Length) return null;
        int pos = 4 + (int)nameLength;
        string? export = NbdHandshake.DecodeName(data.AsSpan(4, (int)nameLength));
        if (export is null) return null;
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos));
        pos += 4;
        if (count > NbdLimits.MaxMetaQueries) { error = NbdRep.ErrTooBig; message = "too many queries"; return null; }
        var queries = new List<string>((int)count);
        for (uint i = 0; i < count; i++)
        {
            if (data.Length - pos < 4) return null;
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos));
            pos += 4;
            if (length > NbdLimits.MaxString || length > data.Length - pos) return null;
            string? q = NbdHandshake.DecodeName(data.AsSpan(pos, (int)length));
            if (q is null) return null;
            queries.Add(q);
            pos += (int)length;
        }
        if (pos != data.Length) return null;
        return (export, queries);
    }

    /// <summary>
    /// The context ids <paramref name="queries"/> select, each once, in the order first asked for. LIST with no
    /// queries lists everything; SET with none selects nothing. Namespace wildcards are for LIST only; unknown names
    /// are ignored, never rejected.
    /// </summary>
    public static List<uint> Match(List<string> queries, bool set)
    {
        var matches = new List<uint>();
        if (queries.Count == 0 && !set) matches.AddRange([NbdMetaContext.BaseAllocationId, NbdMetaContext.AllocationDepthId]);
        foreach (var q in queries)
        {
            uint id = q switch
            {
                NbdMetaContext.BaseAllocation => NbdMetaContext.BaseAllocationId,
                NbdMetaContext.AllocationDepth => NbdMetaContext.AllocationDepthId,
                "base:" when !set => NbdMetaContext.BaseAllocationId,
                "qemu:" when !set => NbdMetaContext.AllocationDepthId,
                _ => 0,
            };
            if (id != 0 && !matches.Contains(id)) matches.Add(id);
        }
        return matches;
    }

    /// <summary>The context's name, as REPLY_META_CONTEXT carries it.</summary>
    public static string NameOf(uint id) => id == NbdMetaContext.BaseAllocationId ? NbdMetaContext.BaseAllocation : NbdMetaContext.AllocationDepth;
}
