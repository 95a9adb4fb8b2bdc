namespace Qed.Check;

/// <summary>
/// One bit per file cluster, stored in 32 Ki-bit chunks made on first use: memory follows the clusters that tables
/// reference, never the file's apparent length (a sparse 64 TiB file costs nothing).
/// </summary>
internal sealed class SparseBitmap
{
    private const int ChunkBits = 15;
    private readonly Dictionary<long, ulong[]> _chunks = new();

    /// <summary>The number of distinct bits set.</summary>
    public long Count { get; private set; }

    /// <summary>Sets a bit; returns false if it was already set.</summary>
    public bool Set(long index)
    {
        if (!_chunks.TryGetValue(index >> ChunkBits, out var chunk))
            _chunks[index >> ChunkBits] = chunk = new ulong[(1 << ChunkBits) / 64];
        int bit = (int)(index & ((1 << ChunkBits) - 1));
        ulong mask = 1UL << (bit & 63);
        if ((chunk[bit >> 6] & mask) != 0) return false;
        chunk[bit >> 6] |= mask;
        Count++;
        return true;
    }

    /// <summary>Sets bits [first, first+count).</summary>
    public void SetRange(long first, long count)
    {
        for (long i = first; i < first + count; i++) Set(i);
    }

    /// <summary>How many of bits [first, first+count) are set.</summary>
    public long CountSet(long first, long count)
    {
        long set = 0;
        for (long i = first; i < first + count; i++)
            if (Get(i)) set++;
        return set;
    }

    /// <summary>Whether a bit is set.</summary>
    public bool Get(long index)
    {
        if (!_chunks.TryGetValue(index >> ChunkBits, out var chunk)) return false;
        int bit = (int)(index & ((1 << ChunkBits) - 1));
        return (chunk[bit >> 6] & (1UL << (bit & 63))) != 0;
    }
}
