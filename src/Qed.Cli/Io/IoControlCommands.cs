namespace Qed.Cli.Io;

/// <summary>
/// help, quit, sleep, abort and sigraise: the commands about the session and the process rather than the image.
/// Owns the quit request, which ends the command loop after the current command.
/// </summary>
internal sealed class IoControlCommands(IoOutput output)
{
    /// <summary>Whether quit ran.</summary>
    public bool QuitRequested { get; private set; }

    /// <summary>The handlers, by command name.</summary>
    public (string Name, IoHandler Run)[] Handlers =>
    [
        ("help", HelpAsync), ("quit", QuitAsync), ("sleep", SleepAsync), ("abort", AbortAsync), ("sigraise", SigraiseAsync),
    ];

    private Task<bool> HelpAsync(string[] args, CancellationToken ct)
    {
        if (args.Length == 1)
        {
            var c = IoCommandTable.Find(args[0]);
            if (c is null)
            {
                output.Line($"command {args[0]} not found");
                return Task.FromResult(false);
            }
            output.Line(IoCommandTable.HelpLine(c));
            return Task.FromResult(true);
        }
        using (output.Hold())
        {
            foreach (var c in IoCommandTable.All) output.Out.WriteLine(IoCommandTable.HelpLine(c));
            output.Out.WriteLine();
            output.Out.WriteLine("Use 'help commandname' for extended help.");
        }
        return Task.FromResult(true);
    }

    private Task<bool> QuitAsync(string[] args, CancellationToken ct)
    {
        QuitRequested = true;
        return Task.FromResult(true);
    }

    private Task<bool> SleepAsync(string[] args, CancellationToken ct)
    {
        long? ms = IoArgs.Number(args[0], output.Out);
        return ms is null ? Task.FromResult(false) : Delay(ms.Value, ct);

        static async Task<bool> Delay(long ms, CancellationToken ct)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(ms), ct);
            return true;
        }
    }

    private Task<bool> AbortAsync(string[] args, CancellationToken ct)
    {
        Console.Out.Flush();
        NativeSignals.AbortProcess();
        return Task.FromResult(false);
    }

    private Task<bool> SigraiseAsync(string[] args, CancellationToken ct)
    {
        long? signal = IoArgs.Number(args[0], output.Out);
        if (signal is null) return Task.FromResult(false);
        if (signal is < 1 or > 64)
        {
            output.Line($"signal argument '{args[0]}' is too large to be a valid signal");
            return Task.FromResult(false);
        }
        Console.Out.Flush();
        // Only here for a signal that does not end the process (or is caught, or ignored).
        return Task.FromResult(NativeSignals.Raise((int)signal.Value));
    }
}
