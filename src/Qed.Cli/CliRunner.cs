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
                Console.Error.WriteLine($"qed: {Describe(e)}");
                // A lock conflict is two lines, as qemu-img prints it: the error, then which image is in use.
                if (Find<ImageLockedException>(e) is { } locked) Console.Error.WriteLine(locked.Hint);
                if (parse.GetValue(DebugOption)) Console.Error.WriteLine(e);
                return errorExitCode;
            }
        });
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
        return message.ReplaceLineEndings(" ");
    }
}
