namespace Qed.Cli;

/// <summary>
/// qemu-img's <c>-o key=value,key=value</c> lists (several -o are merged). Each option is taken once by the command
/// that understands it; anything left over is an error naming it.
/// </summary>
internal sealed class OptionList
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static OptionList Parse(IEnumerable<string> lists)
    {
        var result = new OptionList();
        foreach (string list in lists)
            foreach (string item in list.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = item.IndexOf('=');
                if (eq <= 0) throw new ArgumentException($"Invalid option '{item}': expected key=value");
                result._values[item[..eq]] = item[(eq + 1)..];
            }
        return result;
    }

    /// <summary>
    /// The keys not yet taken, in the order first given: qemu-img checks each option as it reads the list, so its
    /// first complaint is about the first bad one. (A dictionary that is only added to and removed from enumerates in
    /// insertion order.)
    /// </summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>The value of <paramref name="key"/>, without taking it; null when absent.</summary>
    public string? Peek(string key) => _values.TryGetValue(key, out var value) ? value : null;

    public string? Take(string key) => _values.Remove(key, out var value) ? value : null;

    public long? TakeSize(string key) =>
        Take(key) is { } text ? (SizeParser.TryParse(text, out long n) ? n : throw new ArgumentException($"Parameter '{key}' expects a size, not '{text}'")) : null;

    /// <summary>qemu-img's refusal of an option the format <paramref name="format"/> does not know (its words name no format).</summary>
    public void ThrowIfAnyLeft(string format)
    {
        if (_values.Count > 0) throw new ArgumentException($"Invalid parameter '{_values.Keys.First()}'");
    }
}
