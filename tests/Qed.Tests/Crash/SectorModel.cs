namespace Qed.Tests.Crash;

/// <summary>
/// What each 512-byte guest sector may read after a crash. Every write stamps its sectors with a pattern naming the
/// write (<see cref="Fill"/>), so a sector read back says which write it came from (<see cref="Identify"/>); 0 is a
/// zero sector, <see cref="BackingId"/> the backing file's content. The model keeps, per sector, the values it holds
/// without a crash, the values durable as of the last completed flush, and the values written since: after a crash a
/// sector may read any durable or pending value and nothing else.
/// </summary>
internal sealed class SectorModel
{
    public const long BackingId = -1;
    public const long Garbage = long.MinValue;

    private List<long>[] _current;
    private List<long>[] _durable;
    private readonly List<long>[] _pending;

    public SectorModel(long sectors, Func<long, long> initial)
    {
        _current = new List<long>[sectors];
        _pending = new List<long>[sectors];
        for (long s = 0; s < sectors; s++)
        {
            _current[s] = [initial(s)];
            _pending[s] = [];
        }
        _durable = Copy(_current);
    }

    public long Sectors => _current.Length;

    /// <summary>A guest operation: a write of <paramref name="id"/>, zeroes (id 0), or a discard (old or zero).</summary>
    public readonly record struct Change(long FirstSector, long Count, long Id, bool Discard);

    /// <summary>The change may be on disk from now on (its request has started).</summary>
    public void Begin(Change c)
    {
        for (long s = c.FirstSector; s < c.FirstSector + c.Count; s++) Add(_pending[s], c.Id);
    }

    /// <summary>The request completed: it is what the sector holds without a crash.</summary>
    public void End(Change c)
    {
        for (long s = c.FirstSector; s < c.FirstSector + c.Count; s++)
        {
            if (c.Discard) Add(_current[s], 0);
            else _current[s] = [c.Id];
        }
    }

    /// <summary>A flush completed: everything the sectors hold now is durable.</summary>
    public void Flushed()
    {
        _durable = Copy(_current);
        foreach (var p in _pending) p.Clear();
    }

    /// <summary>Whether sector <paramref name="s"/> may read <paramref name="id"/> after a crash now.</summary>
    public bool Allowed(long s, long id) => _durable[s].Contains(id) || _pending[s].Contains(id);

    /// <summary>Whether sector <paramref name="s"/> may read <paramref name="id"/> with no crash.</summary>
    public bool AllowedNow(long s, long id) => _current[s].Contains(id);

    public string Describe(long s) =>
        $"durable {{{string.Join(",", _durable[s])}}} pending {{{string.Join(",", _pending[s])}}}";

    private static void Add(List<long> set, long id)
    {
        if (!set.Contains(id)) set.Add(id);
    }

    private static List<long>[] Copy(List<long>[] sets)
    {
        var copy = new List<long>[sets.Length];
        for (int i = 0; i < sets.Length; i++) copy[i] = [.. sets[i]];
        return copy;
    }

    /// <summary>
    /// Fills <paramref name="buffer"/> (whole sectors) with the pattern of write <paramref name="id"/> from sector
    /// <paramref name="firstSector"/>: the sector's 64 u64 words alternate the write's id and the sector number, so a
    /// sector read from the wrong place or from another write is recognised.
    /// </summary>
    public static void Fill(Span<byte> buffer, long id, long firstSector)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(buffer);
        for (int i = 0; i < words.Length; i += 2)
        {
            words[i] = id;
            words[i + 1] = firstSector + i / 64;
        }
    }

    /// <summary>Which write a sector's content came from: 0 for zeroes, <see cref="Garbage"/> if no write's pattern matches.</summary>
    public static long Identify(ReadOnlySpan<byte> sector, long s)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(sector);
        long id = words[0];
        if (id == 0) return sector.ContainsAnyExcept((byte)0) ? Garbage : 0;
        for (int i = 0; i < words.Length; i += 2)
            if (words[i] != id || words[i + 1] != s) return Garbage;
        return id;
    }
}
