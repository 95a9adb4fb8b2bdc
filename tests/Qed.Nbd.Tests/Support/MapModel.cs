using System.Text.Json;

namespace Qed.Nbd.Tests.Support;

/// <summary>Expected maps, derived from qemu-img's own output on the local file, merged the way NBD reports them.</summary>
internal static class MapModel
{
    public readonly record struct Run(long Start, long Length, long Value);

    /// <summary>Parses <c>qemu-img map --output=json</c> into runs of <paramref name="value"/>, merging equal neighbours.</summary>
    public static List<Run> FromQemuImgJson(string json, Func<JsonElement, long> value)
    {
        var runs = new List<Run>();
        foreach (var e in JsonDocument.Parse(json).RootElement.EnumerateArray())
            Add(runs, e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), value(e));
        return runs;
    }

    /// <summary>base:allocation flags as qemu-nbd derives them: 1 (hole) unless data, 2 (zero) when zero.</summary>
    public static long BaseAllocation(JsonElement e) =>
        (e.GetProperty("data").GetBoolean() ? 0 : 1) | (e.GetProperty("zero").GetBoolean() ? 2 : 0);

    /// <summary>qemu:allocation-depth: 0 when no layer has it, else the qemu-img depth plus one.</summary>
    public static long AllocationDepth(JsonElement e) =>
        e.GetProperty("present").GetBoolean() ? e.GetProperty("depth").GetInt64() + 1 : 0;

    /// <summary>Parses <c>nbdinfo --map</c> text: "offset length value description".</summary>
    public static List<Run> FromNbdinfo(string text)
    {
        var runs = new List<Run>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Add(runs, long.Parse(f[0]), long.Parse(f[1]), long.Parse(f[2]));
        }
        return runs;
    }

    private static void Add(List<Run> runs, long start, long length, long value)
    {
        if (runs.Count > 0 && runs[^1].Value == value && runs[^1].Start + runs[^1].Length == start)
            runs[^1] = runs[^1] with { Length = runs[^1].Length + length };
        else
            runs.Add(new Run(start, length, value));
    }
}
