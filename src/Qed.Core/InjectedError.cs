using System.Runtime.InteropServices;

namespace Qed;

/// <summary>
/// One blkdebug <c>inject-error</c> rule: I/O of the kind <paramref name="Event"/> names (<c>read_aio</c> or
/// <c>write_aio</c>) fails with <paramref name="Errno"/>; with <paramref name="Once"/> only the first such I/O does; with
/// <paramref name="Sector"/> only I/O covering that 512-byte sector does.
/// </summary>
public sealed record InjectedError(string Event, int Errno, bool Once, long? Sector)
{
    /// <summary>Linux's EIO, blkdebug's default errno.</summary>
    public const int EIO = 5;

    /// <summary>The C library's text for <see cref="Errno"/> (<c>No space left on device</c> for 28), as qemu prints it.</summary>
    public string Message => Marshal.GetPInvokeErrorMessage(Errno);

    /// <summary>True when the rule applies to a write (<c>write_aio</c>); else to reads.</summary>
    public bool OnWrite => Event is "write_aio";

    internal static IReadOnlyList<InjectedError> FromTree(object list)
    {
        var rules = new List<InjectedError>();
        foreach (ImageName.Tree rule in new ImageName.Tree().Items(list))
        {
            string @event = rule.Text("event") ?? throw new ArgumentException("Parameter 'event' is missing");
            if (@event is not ("read_aio" or "write_aio"))
                throw new ArgumentException($"Invalid parameter '{@event}' (events supported here: read_aio, write_aio)");
            int errno = rule.Text("errno") is { } e ? Number(e, "errno") : EIO;
            long? sector = rule.Text("sector") is { } s ? Number(s, "sector") : null;
            bool once = rule.Text("once") is "on" or "true";
            rule.Allow("immediately", "state", "iotype");
            rule.Refuse("blkdebug");
            rules.Add(new InjectedError(@event, errno, once, sector));
        }
        return rules;
    }

    private static int Number(string text, string key) =>
        int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n)
            ? n : throw new ArgumentException($"Parameter '{key}' expects a number");
}
