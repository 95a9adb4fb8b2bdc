using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// Builds one BLOCK_STATUS answer from <see cref="AllocationMap"/>: extents merged when their flags match, lengths
/// aligned to 512 bytes (except the image's tail), at most one extent with REQ_ONE and never past the request.
/// </summary>
internal static class BlockStatusBuilder
{
    public static async ValueTask<List<(uint Length, uint Flags)>> BuildAsync(DiskImage image, uint contextId, long offset, long length, bool one, CancellationToken ct)
    {
        int cap = one ? 1 : NbdLimits.MaxExtents;
        var list = new Aligner(contextId, image.Size);
        long end = offset + length;
        for (long pos = offset; pos < end && list.Count <= cap;)
        {
            var e = await AllocationMap.GetExtentAsync(image, pos, end - pos, ct).ConfigureAwait(false);
            long n = Math.Clamp(e.Length, 1, end - pos);
            list.Add(pos, pos + n, FlagsFor(contextId, e));
            pos += n;
        }
        return list.Finish(cap);
    }

    /// <summary>base:allocation: HOLE unless some layer stores data, ZERO when it reads as zeroes without data.
    /// qemu:allocation-depth: 0 unallocated, 1 this image, 2 its backing file, and so on.</summary>
    public static uint FlagsFor(uint contextId, in ChainExtent e) => contextId == NbdMetaContext.BaseAllocationId
        ? (e.Data ? 0 : NbdMetaContext.StateHole) | (e.Zero ? NbdMetaContext.StateZero : 0)
        : e.Present ? (uint)(e.Depth + 1) : 0;

    /// <summary>
    /// Collects extents, merging equal neighbours. A boundary inside a 512-byte block (possible only with odd raw
    /// holes) gives that block the flags both sides can promise: for base:allocation the common bits (0 = data,
    /// always safe); for depth the deeper layer.
    /// </summary>
    private sealed class Aligner(uint contextId, long imageSize)
    {
        private const int Align = NbdLimits.StatusAlignment;
        private readonly List<(long Start, long End, uint Flags)> _done = [];
        private long _start, _end;
        private uint _flags;
        private bool _have;

        public int Count => _done.Count;

        public void Add(long start, long end, uint flags)
        {
            if (!_have) { (_start, _end, _flags, _have) = (start, end, flags, true); return; }
            if (flags == _flags) { _end = end; return; }
            if (_end % Align == 0 || _end == imageSize) { Emit(_start, _end, _flags); (_start, _end, _flags) = (start, end, flags); return; }
            long blockStart = _end - _end % Align;
            long blockEnd = Math.Min(blockStart + Align, imageSize);
            if (blockStart > _start) Emit(_start, blockStart, _flags);
            uint mixed = contextId == NbdMetaContext.BaseAllocationId ? _flags & flags : Math.Max(_flags, flags);
            if (end <= blockEnd) { (_start, _end, _flags) = (Math.Max(blockStart, _start), end, mixed); return; }
            Emit(Math.Max(blockStart, _start), blockEnd, mixed);
            (_start, _end, _flags) = (blockEnd, end, flags);
        }

        private void Emit(long start, long end, uint flags)
        {
            if (end <= start) return;
            if (_done.Count > 0 && _done[^1].Flags == flags && _done[^1].End == start) _done[^1] = (_done[^1].Start, end, flags);
            else _done.Add((start, end, flags));
        }

        public List<(uint Length, uint Flags)> Finish(int cap)
        {
            if (_have) Emit(_start, _end, _flags);
            var result = new List<(uint, uint)>(Math.Min(cap, _done.Count));
            for (int i = 0; i < _done.Count && i < cap; i++) result.Add(((uint)(_done[i].End - _done[i].Start), _done[i].Flags));
            return result;
        }
    }
}
