namespace Qed.Cli.Io;

/// <summary>Runs one qemu-io command on its operands (the words after its name); false when it failed.</summary>
internal delegate Task<bool> IoHandler(string[] args, CancellationToken ct);

/// <summary>
/// One command as qemu-io describes it: its name and short alias, the argument part and one-line text of its help
/// line (<paramref name="Args"/> null prints no argument part; map has an empty one, as in qemu-io), how many
/// operands it takes (<paramref name="ArgMax"/> -1: no limit) and whether it needs an open file.
/// </summary>
internal sealed record IoCommandInfo(string Name, string? Alt, string? Args, string OneLine, int ArgMin, int ArgMax, bool NeedsFile);

/// <summary>
/// qemu-io's command table: every command <c>qed io</c> knows, in the order help lists them, with the help and
/// usage lines qemu-io prints for them. Pure data; the handlers live in the command groups.
/// </summary>
internal static class IoCommandTable
{
    /// <summary>The commands, in the order help lists them.</summary>
    public static readonly IoCommandInfo[] All =
    [
        new("abort", null, null, "simulate a program crash using abort(3)", 0, 0, false),
        new("aio_flush", null, null, "completes all outstanding aio requests", 0, 0, true),
        new("aio_read", null, "[-Ciqv] [-P pattern] off len [len..]", "asynchronously reads a number of bytes", 2, -1, true),
        new("aio_write", null, "[-Cfiquz] [-P pattern] off len [len..]", "asynchronously writes a number of bytes", 2, -1, true),
        new("alloc", null, "offset [count]", "checks if offset is allocated in the file", 1, 2, true),
        new("close", "c", null, "close the current open file", 0, 0, true),
        new("discard", null, "[-Cq] off len", "discards a number of bytes at a specified offset", 2, -1, true),
        new("flush", "f", null, "flush all in-core file state to disk", 0, 0, true),
        new("help", "?", "[command]", "help for one or all commands", 0, 1, false),
        new("info", "i", null, "prints information about the current file", 0, 0, true),
        new("length", "l", null, "gets the length of the current file", 0, 0, true),
        new("map", null, "", "prints the allocated areas of a file", 0, 0, true),
        new("open", "o", "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path", 1, -1, false),
        new("quit", "q", null, "exit the program", 0, 0, false),
        new("read", "r", "[-abCqv] [-P pattern [-s off] [-l len]] off len", "reads a number of bytes at a specified offset", 2, -1, true),
        new("readv", null, "[-Cqv] [-P pattern] off len [len..]", "reads a number of bytes at a specified offset", 2, -1, true),
        new("sigraise", null, "signal", "raises a signal", 1, 1, false),
        new("sleep", null, null, "waits for the given value in milliseconds", 1, 1, false),
        new("truncate", "t", "[-m prealloc_mode] off", "truncates the current file at the given offset", 1, 3, true),
        new("write", "w", "[-bcCfnquz] [-P pattern | -s source_file] off len", "writes a number of bytes at a specified offset", 2, -1, true),
        new("writev", null, "[-Cfq] [-P pattern] off len [len..]", "writes a number of bytes at a specified offset", 2, -1, true),
    ];

    /// <summary>The command named <paramref name="name"/> or aliased so; null when there is none.</summary>
    public static IoCommandInfo? Find(string name) => All.FirstOrDefault(c => c.Name == name || c.Alt == name);

    /// <summary>The command's help line, which is also its usage line after bad operands.</summary>
    public static string HelpLine(IoCommandInfo c) => c.Args is null ? $"{c.Name} -- {c.OneLine}" : $"{c.Name} {c.Args} -- {c.OneLine}";
}
