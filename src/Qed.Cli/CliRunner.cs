using System.CommandLine;

namespace Qed.Cli;

/// <summary>
/// Runs a command body and turns failures into one line on stderr and a non-zero exit, as qemu-img does; with
/// --debug the whole exception is printed too.
/// </summary>
internal static class CliRunner
{
    public static readonly Option<bool> DebugOption = new("--debug")
    {
        Description = "Print the stack trace of an error",
        Recursive = true,
    };

    /// <summary>
    /// The name errors start with: as qemu-img, the base name the program was started by (<c>argv[0]</c>, from
    /// /proc/self/cmdline, since the .NET host hides it), so that <c>qed</c> says "qed: ..." and a link named qemu-img
    /// says "qemu-img: ..."; "qed" when it cannot be read or is the dotnet host.
    /// </summary>
    public static readonly string ProgramName = ReadProgramName();

    private static string ReadProgramName()
    {
        try
        {
            byte[] cmdline = File.ReadAllBytes("/proc/self/cmdline");
            int end = Array.IndexOf(cmdline, (byte)0);
            string name = Path.GetFileName(System.Text.Encoding.UTF8.GetString(cmdline, 0, end < 0 ? cmdline.Length : end));
            return name is "" or "dotnet" ? "qed" : name;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "qed";
        }
    }

    /// <summary>
    /// Attaches <paramref name="body"/> as the command's action with qemu-img style error handling; a failure exits
    /// with <paramref name="errorExitCode"/> (compare uses 2, since 1 means "different").
    /// </summary>
    public static void SetAction(Command command, Func<ParseResult, CancellationToken, Task<int>> body, int errorExitCode = 1)
    {
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                return await body(parse, ct);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Console.Out.Flush();
                // A CommandException is already worded, and may be qemu-img's two lines (an error and its hint).
                Console.Error.Write($"{ProgramName}: {MissingImage(command.Name, e is CommandException ? e.Message : Describe(e), e)}"
                    + (e is CommandException { EndsLine: false } ? "" : "\n"));
                // A lock conflict is two lines, as qemu-img prints it: the error, then which image is in use.
                if (Find<ImageLockedException>(e) is { } locked) Console.Error.WriteLine(locked.Hint);
                if (parse.GetValue(DebugOption)) Console.Error.WriteLine(e);
                return errorExitCode;
            }
        });
    }

    /// <summary>
    /// qemu-img names a missing image twice, once for the image and once for the file under it: "Could not open 'X':
    /// Could not open 'X': No such file or directory" (every qemu-img command; qemu-io names it once, and prints its own errors).
    /// </summary>
    private static string MissingImage(string command, string message, Exception e)
    {
        const string Head = "Could not open '", Tail = "': No such file or directory";
        // migrate is qed's own command (no qemu-img twin): it keeps its one naming of a missing source.
        if (command == "migrate") return message;
        if (Find<FileNotFoundException>(e) is null && Find<DirectoryNotFoundException>(e) is null) return message;
        if (!message.StartsWith(Head, StringComparison.Ordinal) || !message.EndsWith(Tail, StringComparison.Ordinal)
            || message.Length < Head.Length + Tail.Length) return message;
        string name = message[Head.Length..^Tail.Length];
        return name.Contains("': ", StringComparison.Ordinal) ? message : $"{Head}{name}': {message}";
    }

    /// <summary>The first exception of type <typeparamref name="T"/> in <paramref name="e"/>'s inner chain.</summary>
    public static T? Find<T>(Exception? e) where T : Exception
    {
        for (; e != null; e = e.InnerException)
            if (e is T found) return found;
        return null;
    }

    /// <summary>One line for an exception: its message, unwrapped from aggregate and invocation wrappers.</summary>
    public static string Describe(Exception e)
    {
        while (e is AggregateException { InnerException: { } inner }) e = inner;
        string message = e.Message;
        // Argument exceptions append " (Parameter 'name')", which means nothing to a user of the tool.
        if (e is ArgumentException { ParamName: { } name })
            message = message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal);
        // The library's repair advice names its API; the tool's users get the command they type, as before.
        return RepairAdvice.ForTool(message).ReplaceLineEndings(" ");
    }
}
