namespace Qed.Cli.Io;

/// <summary>
/// Where qemu-io's lines go: results and most failures on standard output, usage and lookup failures on standard
/// error, as qemu-io does. Owns the lock that keeps the lines of one report together while aio requests finish
/// alongside later commands; standard output is flushed before anything goes to standard error, so the two keep
/// their order when both go to one file.
/// </summary>
internal sealed class IoOutput(TextWriter output, TextWriter error)
{
    private readonly Lock _lock = new();

    /// <summary>Standard output, for <see cref="IoArgs"/>' parse messages (written as they are found).</summary>
    public TextWriter Out => output;

    /// <summary>Standard error, for <see cref="IoArgs.Getopt"/>'s messages.</summary>
    public TextWriter Err => error;

    /// <summary>Holds the output for a report of several lines, written to <see cref="Out"/> inside the scope.</summary>
    public Lock.Scope Hold() => _lock.EnterScope();

    /// <summary>One line on standard output.</summary>
    public void Line(string line)
    {
        lock (_lock) output.WriteLine(line);
    }

    /// <summary>The interactive prompt, flushed so it shows before input is read.</summary>
    public void Prompt(string prompt)
    {
        lock (_lock) { output.Write(prompt); output.Flush(); }
    }

    /// <summary>One line on standard error, after what standard output holds.</summary>
    public void Error(string line)
    {
        lock (_lock)
        {
            output.Flush();
            error.WriteLine(line);
        }
    }

    /// <summary>qemu-io's error_report form: "qemu-io: message" on standard error.</summary>
    public void ErrorReport(string message) => Error($"qemu-io: {message}");

    /// <summary>The command's usage line, as qemu-io prints it after bad operands; always false (the command failed).</summary>
    public bool Usage(string command)
    {
        Line(IoCommandTable.HelpLine(IoCommandTable.Find(command)!));
        return false;
    }

    /// <summary>
    /// Whether <paramref name="length"/> (given as <paramref name="text"/>) fits one qemu-io request; prints
    /// qemu-io's message when it does not.
    /// </summary>
    public bool WithinRequestLimit(long length, string text)
    {
        if (length <= IoArgs.MaxRequest) return true;
        Line($"length cannot exceed {IoArgs.MaxRequest}, given {text}");
        return false;
    }
}
