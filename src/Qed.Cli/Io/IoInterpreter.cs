namespace Qed.Cli.Io;

/// <summary>
/// Runs qemu-io's commands against an image it opens and closes (the <c>open</c> and <c>close</c> commands too) and
/// prints qemu-io's lines: results and most failures on standard output, usage and lookup failures on standard
/// error, as qemu-io does. A failed command is reported and the next one still runs. The thin owner of the parts:
/// the <see cref="IoOutput"/>, the <see cref="IoImageSlot"/>, the <see cref="AioRequests"/> in flight, and the
/// command groups whose handlers <see cref="IoCommandTable"/>'s commands dispatch to.
/// </summary>
internal sealed class IoInterpreter : IAsyncDisposable
{
    private readonly IoOutput _output;
    private readonly IoImageSlot _slot;
    private readonly AioRequests _aio = new();
    private readonly IoControlCommands _control;
    private readonly Dictionary<string, IoHandler> _handlers = [];

    /// <summary>An interpreter with nothing open, printing to <paramref name="output"/> and <paramref name="error"/>.</summary>
    public IoInterpreter(TextWriter output, TextWriter error)
    {
        _output = new IoOutput(output, error);
        _slot = new IoImageSlot(_output);
        _control = new IoControlCommands(_output);
        (string Name, IoHandler Run)[][] groups =
        [
            _control.Handlers,
            new IoFileCommands(_output, _slot, _aio).Handlers,
            new IoQueryCommands(_output, _slot).Handlers,
            new IoTransferCommands(_output, _slot).Handlers,
            new IoVectorCommands(_output, _slot, _aio).Handlers,
        ];
        foreach (var group in groups)
            foreach (var (name, run) in group) _handlers.Add(name, run);
        foreach (var c in IoCommandTable.All)
            if (!_handlers.ContainsKey(c.Name)) throw new InvalidOperationException($"The io command '{c.Name}' has no handler.");
    }

    /// <summary>The format (-f) of the command line, which the open command uses too.</summary>
    public string? OpenFormat { get => _slot.DefaultFormat; init => _slot.DefaultFormat = value; }

    /// <summary>Whether the command line gave --image-opts, which the open command uses too.</summary>
    public bool DefaultImageOpts { get => _slot.DefaultImageOpts; init => _slot.DefaultImageOpts = value; }

    /// <summary>Opens the image the command line names; false (after qemu-io's message) when it cannot.</summary>
    public Task<bool> OpenAsync(IoOpenSpec spec, CancellationToken ct) => _slot.OpenAsync(spec, ct);

    /// <summary>Runs the -c commands in order, stopping at quit; true when none failed.</summary>
    public async Task<bool> RunAllAsync(IEnumerable<string> commandLines, CancellationToken ct)
    {
        bool ok = true;
        foreach (string line in commandLines)
        {
            ok &= await RunAsync(line, ct);
            if (_control.QuitRequested) break;
        }
        return ok;
    }

    /// <summary>
    /// qemu-io without -c: reads commands from <paramref name="input"/>, each after a "qemu-io> " prompt, until
    /// quit or the end of input. Failures are reported but, as in qemu-io, do not change the exit code.
    /// </summary>
    public async Task RunInteractiveAsync(TextReader input, CancellationToken ct)
    {
        while (!_control.QuitRequested)
        {
            _output.Prompt("qemu-io> ");
            string? line = await input.ReadLineAsync(ct);
            if (line is null) break;
            await RunAsync(line, ct);
        }
    }

    /// <summary>Runs one command line; returns false when it failed.</summary>
    public async Task<bool> RunAsync(string commandLine, CancellationToken ct)
    {
        // qemu-io splits on blanks only: no quoting.
        var words = commandLine.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0) return true;
        var command = IoCommandTable.Find(words[0]);
        if (command is null)
        {
            _output.Error($"command \"{words[0]}\" not found");
            return false;
        }
        if (command.NeedsFile && _slot.Image is null)
        {
            _output.Error("no file open, try 'help open'");
            return false;
        }
        int count = words.Length - 1;
        if (count < command.ArgMin || (command.ArgMax >= 0 && count > command.ArgMax))
        {
            string expected = command.ArgMax < 0 ? $"at least {command.ArgMin}"
                : command.ArgMin == command.ArgMax ? $"{command.ArgMin}"
                : $"between {command.ArgMin} and {command.ArgMax}";
            _output.Error($"bad argument count {count} to {words[0]}, expected {expected} arguments");
            return false;
        }
        try
        {
            return await _handlers[command.Name](words[1..], ct);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            _output.Line($"{command.Name} failed: {IoText.Errno(e)}");
            return false;
        }
    }

    /// <summary>Completes in-flight requests and closes the image, as qemu-io does on exit.</summary>
    public async ValueTask DisposeAsync()
    {
        await _aio.DrainAsync();
        await _slot.CloseAsync();
    }
}
