using System.Runtime.InteropServices;

namespace Qed;

/// <summary>The kinds of request a blkdebug rule can fail, by their <c>iotype</c> names.</summary>
internal enum InjectedIoType
{
    /// <summary><c>read</c>: reads of guest (or file) data.</summary>
    Read,
    /// <summary><c>write</c>: writes of data.</summary>
    Write,
    /// <summary><c>write-zeroes</c>: requests that make a range read as zeroes.</summary>
    WriteZeroes,
    /// <summary><c>discard</c>: requests that drop a range's content.</summary>
    Discard,
    /// <summary><c>flush</c>: requests that make completed writes durable.</summary>
    Flush,
    /// <summary><c>block-status</c>: allocation queries (what convert asks before it copies a range).</summary>
    BlockStatus,
}

/// <summary>
/// One blkdebug <c>inject-error</c> rule: requests it matches fail with <paramref name="Errno"/>; with
/// <paramref name="Once"/> only the first such request does; with <paramref name="Sector"/> only a request whose range
/// covers that 512-byte sector does. <paramref name="Event"/> says when the rule is active: <c>none</c> always, and for
/// any request type but flush and block-status unless <see cref="IoType"/> names one (observed on qemu-img 7.2:
/// such a rule fails reads, writes, write-zeroes and discards, not flushes or convert's block-status queries);
/// <c>read_aio</c> fails reads and <c>write_aio</c> writes (zeroing included), or the <see cref="IoType"/> given.
/// </summary>
internal sealed record InjectedError(string Event, int Errno, bool Once, long? Sector)
{
    /// <summary>Linux's EIO, blkdebug's default errno.</summary>
    public const int EIO = 5;

    /// <summary>The events a rule may name here: <c>none</c> and the two every format emits for its data.</summary>
    public static readonly string[] Events = ["none", "read_aio", "write_aio"];

    /// <summary>The rule's <c>iotype</c>: the one kind of request it fails; null for the event's default kinds.</summary>
    public InjectedIoType? IoType { get; init; }

    /// <summary>The C library's text for <see cref="Errno"/> (<c>No space left on device</c> for 28), as qemu prints it.</summary>
    public string Message => Marshal.GetPInvokeErrorMessage(Errno);

    /// <summary>True when the rule applies to a write (<c>write_aio</c>); else to reads.</summary>
    public bool OnWrite => Event is "write_aio";

    /// <summary>Whether the rule fails a request of kind <paramref name="type"/> over [offset, offset+length).</summary>
    public bool Matches(InjectedIoType type, long offset, long length)
    {
        bool kind = IoType is { } only ? only == type : Event switch
        {
            "read_aio" => type == InjectedIoType.Read,
            "write_aio" => type is InjectedIoType.Write or InjectedIoType.WriteZeroes,
            _ => type is not (InjectedIoType.Flush or InjectedIoType.BlockStatus),
        };
        // A flush has no range: a sector filter never excludes it.
        return kind && (Sector is not { } s || type == InjectedIoType.Flush || (s * 512 < offset + length && s * 512 + 512 > offset));
    }

    /// <summary>The <c>iotype</c> name of <paramref name="type"/>, as the json: option spells it.</summary>
    public static string IoTypeName(InjectedIoType type) => type switch
    {
        InjectedIoType.WriteZeroes => "write-zeroes",
        InjectedIoType.BlockStatus => "block-status",
        _ => type.ToString().ToLowerInvariant(),
    };

    internal static IReadOnlyList<InjectedError> FromTree(object list)
    {
        var rules = new List<InjectedError>();
        foreach (ImageName.Tree rule in new ImageName.Tree().Items(list))
        {
            string @event = rule.Text("event") ?? throw new ArgumentException("Parameter 'event' is missing");
            if (!Events.Contains(@event))
                throw new ArgumentException($"Invalid parameter '{@event}' (events supported here: {string.Join(", ", Events)})");
            InjectedIoType? type = null;
            if (rule.Text("iotype") is { } t)
            {
                // qemu's words for a value outside the enumeration (observed: "invalid parameter value: bogus").
                type = Enum.GetValues<InjectedIoType>().Cast<InjectedIoType?>().FirstOrDefault(k => IoTypeName(k!.Value) == t)
                    ?? throw new ArgumentException($"invalid parameter value: {t}");
            }
            int errno = rule.Text("errno") is { } e ? (int)Number(e, "errno", 0, int.MaxValue) : EIO;
            // A negative sector (blkdebug's default, -1) matches any.
            long? sector = rule.Text("sector") is { } s && Number(s, "sector", long.MinValue, long.MaxValue / 512) is var n and >= 0 ? n : null;
            bool once = rule.Text("once") is "on" or "true";
            rule.Allow("immediately", "state");
            rule.Refuse("blkdebug");
            rules.Add(new InjectedError(@event, errno, once, sector) { IoType = type });
        }
        return rules;
    }

    private static long Number(string text, string key, long min, long max) =>
        long.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long n) && n >= min && n <= max
            ? n : throw new ArgumentException($"Parameter '{key}' expects a number");
}
