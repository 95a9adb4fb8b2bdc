using Qed.Formats.Qed;

namespace Qed.Cli.Io;

/// <summary>
/// Runs qemu-io's commands against an image it opens and closes (the <c>open</c> and <c>close</c> commands too) and
/// prints qemu-io's lines: results and most failures on standard output, usage and lookup failures on standard
/// error, as qemu-io does. A failed command is reported and the next one still runs.
/// </summary>
internal sealed partial class IoInterpreter(TextWriter output, TextWriter error) : IAsyncDisposable
{
    private DiskImage? _image;
    private string? _snapshotFile;
    private readonly List<Task> _inFlight = [];
    private readonly Lock _outputLock = new();
    private bool _quit;

    private delegate Task<bool> Handler(string[] args, CancellationToken ct);

    /// <summary>One command; <paramref name="Args"/> null prints no argument part in help (map has an empty one, as in qemu-io).</summary>
    private sealed record IoCommandInfo(string Name, string? Alt, string? Args, string OneLine, int ArgMin, int ArgMax, bool NeedsFile, Handler Run);

    private IoCommandInfo[]? _table;

    /// <summary>The commands, in the order help lists them.</summary>
    private IoCommandInfo[] Table => _table ??=
    [
        new("abort", null, null, "simulate a program crash using abort(3)", 0, 0, false, AbortAsync),
        new("aio_flush", null, null, "completes all outstanding aio requests", 0, 0, true, AioFlushAsync),
        new("aio_read", null, "[-Ciqv] [-P pattern] off len [len..]", "asynchronously reads a number of bytes", 2, -1, true, AioReadAsync),
        new("aio_write", null, "[-Cfiquz] [-P pattern] off len [len..]", "asynchronously writes a number of bytes", 2, -1, true, AioWriteAsync),
        new("alloc", null, "offset [count]", "checks if offset is allocated in the file", 1, 2, true, AllocAsync),
        new("close", "c", null, "close the current open file", 0, 0, true, CloseAsync),
        new("discard", null, "[-Cq] off len", "discards a number of bytes at a specified offset", 2, -1, true, DiscardAsync),
        new("flush", "f", null, "flush all in-core file state to disk", 0, 0, true, FlushAsync),
        new("help", "?", "[command]", "help for one or all commands", 0, 1, false, HelpAsync),
        new("info", "i", null, "prints information about the current file", 0, 0, true, InfoAsync),
        new("length", "l", null, "gets the length of the current file", 0, 0, true, LengthAsync),
        new("map", null, "", "prints the allocated areas of a file", 0, 0, true, MapAsync),
        new("open", "o", "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path", 1, -1, false, OpenCommandAsync),
        new("quit", "q", null, "exit the program", 0, 0, false, QuitAsync),
        new("read", "r", "[-abCqv] [-P pattern [-s off] [-l len]] off len", "reads a number of bytes at a specified offset", 2, -1, true, ReadAsync),
        new("readv", null, "[-Cqv] [-P pattern] off len [len..]", "reads a number of bytes at a specified offset", 2, -1, true, ReadvAsync),
        new("sigraise", null, "signal", "raises a signal", 1, 1, false, SigraiseAsync),
        new("sleep", null, null, "waits for the given value in milliseconds", 1, 1, false, SleepAsync),
        new("truncate", "t", "[-m prealloc_mode] off", "truncates the current file at the given offset", 1, 3, true, TruncateAsync),
        new("write", "w", "[-bcCfnquz] [-P pattern | -s source_file] off len", "writes a number of bytes at a specified offset", 2, -1, true, WriteAsync),
        new("writev", null, "[-Cfq] [-P pattern] off len [len..]", "writes a number of bytes at a specified offset", 2, -1, true, WritevAsync),
    ];

    /// <summary>Opens the image the command line names; false (after qemu-io's message) when it cannot.</summary>
    public async Task<bool> OpenAsync(IoOpenSpec spec, CancellationToken ct)
    {
        if (_image is not null)
        {
            ErrorReport("file open already, try 'help close'");
            return false;
        }
        string path = spec.Target;
        try
        {
            string? format = spec.Format;
            if (spec.ImageOpts) (path, format) = IoOpenSpec.FromOptions(spec.Target, format);
            if (spec.Snapshot && !spec.ReadOnly) return await OpenSnapshotAsync(path, format, spec.Cache, ct);
            _image = await ImageArgs.OpenAsync(path, format, spec.ReadOnly, ct: ct, cache: spec.Cache, forceShare: spec.ForceShare);
            ProbeWarning.PrintIfProbedRaw(_image, path);
            return true;
        }
        catch (CommandException e)
        {
            // qemu-io prints the open's reason after "can't open device X: ", without the "Could not open 'X': " that
            // qemu-img (and ImageArgs) put first; only a missing file's reason keeps it, as in qemu-io.
            string prefix = $"Could not open '{path}': ";
            bool strip = e.Message.StartsWith(prefix, StringComparison.Ordinal)
                && (e.InnerException is not FileNotFoundException
                    || e.Message.AsSpan(prefix.Length).StartsWith("Could not open backing file: ", StringComparison.Ordinal));
            string reason = strip ? e.Message[prefix.Length..] : e.Message;
            // An option string names no device: qemu-io then says only "can't open: ".
            ErrorReport(spec.ImageOpts ? $"can't open: {reason}" : $"can't open device {path}: {reason}");
            if (CliRunner.Find<ImageLockedException>(e) is { } locked) Stderr(locked.Hint);
            return false;
        }
    }

    /// <summary>
    /// -s: the image is only read; writes go to a temporary qed overlay backed by it (as qemu-io's temporary
    /// overlay), which <see cref="CloseImageAsync"/> deletes.
    /// </summary>
    private async Task<bool> OpenSnapshotAsync(string path, string? format, Storage.CacheMode cache, CancellationToken ct)
    {
        string full = Path.GetFullPath(path);
        long size;
        await using (var image = await ImageArgs.OpenAsync(full, format, readOnly: true, ct: ct))
        {
            size = image.Size;
            format = image.Format;
        }
        string overlay = Path.Combine(Path.GetTempPath(), $"qed-io-snapshot-{Environment.ProcessId}-{Guid.NewGuid():N}.qed");
        await QedImage.CreateAsync(overlay, new QedCreateOptions { Size = size, BackingFile = full, BackingFormat = format }, ct);
        _snapshotFile = overlay;
        try
        {
            _image = await ImageArgs.OpenAsync(overlay, "qed", readOnly: false, ct: ct, cache: cache);
        }
        catch
        {
            File.Delete(overlay);
            _snapshotFile = null;
            throw;
        }
        return true;
    }

    /// <summary>Closes the open image (deleting a snapshot overlay).</summary>
    private async Task CloseImageAsync()
    {
        var image = _image;
        _image = null;
        try
        {
            if (image is not null) await image.DisposeAsync();
        }
        finally
        {
            if (_snapshotFile is not null) File.Delete(_snapshotFile);
            _snapshotFile = null;
        }
    }

    /// <summary>Runs the -c commands in order, stopping at quit; true when none failed.</summary>
    public async Task<bool> RunAllAsync(IEnumerable<string> commandLines, CancellationToken ct)
    {
        bool ok = true;
        foreach (string line in commandLines)
        {
            ok &= await RunAsync(line, ct);
            if (_quit) break;
        }
        return ok;
    }

    /// <summary>
    /// qemu-io without -c: reads commands from <paramref name="input"/>, each after a "qemu-io> " prompt, until
    /// quit or the end of input. Failures are reported but, as in qemu-io, do not change the exit code.
    /// </summary>
    public async Task RunInteractiveAsync(TextReader input, CancellationToken ct)
    {
        while (!_quit)
        {
            lock (_outputLock) { output.Write("qemu-io> "); output.Flush(); }
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
        var command = Find(words[0]);
        if (command is null)
        {
            Stderr($"command \"{words[0]}\" not found");
            return false;
        }
        if (command.NeedsFile && _image is null)
        {
            Stderr("no file open, try 'help open'");
            return false;
        }
        int count = words.Length - 1;
        if (count < command.ArgMin || (command.ArgMax >= 0 && count > command.ArgMax))
        {
            string expected = command.ArgMax < 0 ? $"at least {command.ArgMin}"
                : command.ArgMin == command.ArgMax ? $"{command.ArgMin}"
                : $"between {command.ArgMin} and {command.ArgMax}";
            Stderr($"bad argument count {count} to {words[0]}, expected {expected} arguments");
            return false;
        }
        try
        {
            return await command.Run(words[1..], ct);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            Stdout($"{command.Name} failed: {IoText.Errno(e)}");
            return false;
        }
    }

    private IoCommandInfo? Find(string name) => Table.FirstOrDefault(c => c.Name == name || c.Alt == name);

    /// <summary>The command's usage line, as qemu-io prints it after bad operands.</summary>
    private bool Usage(string name)
    {
        var c = Find(name)!;
        Stdout(HelpLine(c));
        return false;
    }

    private static string HelpLine(IoCommandInfo c) => c.Args is null ? $"{c.Name} -- {c.OneLine}" : $"{c.Name} {c.Args} -- {c.OneLine}";

    private Task<bool> HelpAsync(string[] args, CancellationToken ct)
    {
        if (args.Length == 1)
        {
            var c = Find(args[0]);
            if (c is null)
            {
                Stdout($"command {args[0]} not found");
                return Task.FromResult(false);
            }
            Stdout(HelpLine(c));
            return Task.FromResult(true);
        }
        lock (_outputLock)
        {
            foreach (var c in Table) output.WriteLine(HelpLine(c));
            output.WriteLine();
            output.WriteLine("Use 'help commandname' for extended help.");
        }
        return Task.FromResult(true);
    }

    private Task<bool> QuitAsync(string[] args, CancellationToken ct)
    {
        _quit = true;
        return Task.FromResult(true);
    }

    private Task<bool> SleepAsync(string[] args, CancellationToken ct)
    {
        long? ms = IoArgs.Number(args[0], output);
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
        long? signal = IoArgs.Number(args[0], output);
        if (signal is null) return Task.FromResult(false);
        if (signal is < 1 or > 64)
        {
            Stdout($"signal argument '{args[0]}' is too large to be a valid signal");
            return Task.FromResult(false);
        }
        Console.Out.Flush();
        // Only here for a signal that does not end the process (or is caught, or ignored).
        return Task.FromResult(NativeSignals.Raise((int)signal.Value));
    }

    private async Task<bool> OpenCommandAsync(string[] args, CancellationToken ct)
    {
        var parsed = IoArgs.Getopt("open", args, "snCro:kt:d:U", error);
        if (parsed is null) return Usage("open");
        var (flags, operands) = parsed.Value;
        bool readOnly = false, snapshot = false;
        var cache = Storage.CacheMode.WriteBack;
        string? options = null;
        foreach (var (flag, value) in flags)
        {
            switch (flag)
            {
                case 'r': readOnly = true; break;
                case 'n': cache = Storage.CacheMode.None; break;
                case 't':
                    if (IoOpenSpec.ParseCache(value!) is not { } mode)
                    {
                        ErrorReport($"Invalid cache option: {value}");
                        return false;
                    }
                    cache = mode;
                    break;
                case 'o': options = options is null ? value : $"{options},{value}"; break;
                case 's': snapshot = true; break;
            }
        }
        if (operands.Count > 1) return Usage("open");
        if (_image is not null)
        {
            ErrorReport("file open already, try 'help close'");
            return false;
        }
        if (operands.Count == 0 && options is null) return Usage("open");
        string target = operands.Count == 1 ? operands[0] : "";
        if (options is not null)
        {
            // Options after -o name the file (file.filename=) unless a path is given too.
            target = operands.Count == 1 ? $"file.filename={operands[0].Replace(",", ",,", StringComparison.Ordinal)},{options}" : options;
            return await OpenAsync(new IoOpenSpec(target, null, readOnly, cache, ImageOpts: true, snapshot), ct);
        }
        return await OpenAsync(new IoOpenSpec(target, OpenFormat, readOnly, cache, DefaultImageOpts, snapshot), ct);
    }

    /// <summary>The format (-f) and --image-opts of the command line, which the open command uses too.</summary>
    public string? OpenFormat { get; init; }

    /// <inheritdoc cref="OpenFormat"/>
    public bool DefaultImageOpts { get; init; }

    private async Task<bool> CloseAsync(string[] args, CancellationToken ct)
    {
        await DrainAsync();
        await CloseImageAsync();
        return true;
    }

    /// <summary>Waits for the aio requests still in flight (their results print as each completes).</summary>
    private async Task DrainAsync()
    {
        Task[] pending;
        lock (_inFlight) { pending = [.. _inFlight]; _inFlight.Clear(); }
        await Task.WhenAll(pending);
    }

    /// <summary>Completes in-flight requests and closes the image, as qemu-io does on exit.</summary>
    public async ValueTask DisposeAsync()
    {
        await DrainAsync();
        await CloseImageAsync();
    }

    private void Stdout(string line)
    {
        lock (_outputLock) output.WriteLine(line);
    }

    private void Stderr(string line)
    {
        lock (_outputLock)
        {
            output.Flush();
            error.WriteLine(line);
        }
    }

    /// <summary>qemu-io's error_report form: "qemu-io: message" on standard error.</summary>
    private void ErrorReport(string message) => Stderr($"qemu-io: {message}");
}
