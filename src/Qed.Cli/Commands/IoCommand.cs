using System.CommandLine;
using Qed.Cli.Io;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed io [-f fmt] [-r] [-c CMD]... [FILE]</c>: qemu-io's exerciser, with its commands (see <c>qed io -c help</c>),
/// flags and output. Without -c the commands are read from standard input.
/// </summary>
internal static class IoCommand
{
    public static Command Build()
    {
        // Single-valued options are arrays so that a repeat (the iotests pass -f twice) takes the last, as getopt does.
        var format = new Option<string[]>("-f", "--format") { Description = "Image format (probed if omitted)" };
        var readOnly = new Option<bool>("-r", "--read-only") { Description = "Open read-only" };
        var commands = new Option<string[]>("-c", "--cmd") { Description = "A command to run; repeat -c for several, run in order; without -c commands come from standard input" };
        var imageOpts = new Option<bool>("--image-opts") { Description = "FILE is an option string (driver=qed,file.filename=PATH)" };
        var cache = new Option<string[]>("-t", "--cache") { Description = "Cache mode: writeback (default), writethrough, none, directsync, unsafe" };
        var noCache = new Option<bool>("-n", "--nocache") { Description = "Short for -t none" };
        var aio = new Option<string[]>("-i", "--aio") { Description = "AIO mode (threads, native, io_uring): accepted, qed has one I/O path" };
        var nativeAio = new Option<bool>("-k", "--native-aio") { Description = "Accepted for qemu-io compatibility" };
        var copyOnRead = new Option<bool>("-C", "--copy-on-read") { Description = "Accepted for qemu-io compatibility (reads do not copy up)" };
        var misalign = new Option<bool>("-m", "--misalign") { Description = "Accepted for qemu-io compatibility" };
        var discard = new Option<string[]>("-d", "--discard") { Description = "Discard mode (ignore, unmap): accepted" };
        var snapshot = new Option<bool>("-s", "--snapshot") { Description = "Writes go to a temporary overlay, deleted at exit; the image is not changed" };
        var forceShare = ImageArgs.ForceShareOption();
        var trace = new Option<string[]>("-T", "--trace") { Description = "Accepted for qemu-io compatibility (no tracing)" };
        var objects = new Option<string[]>("--object") { Description = "Accepted for qemu-io compatibility" };
        var file = new Argument<string?>("FILE") { Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("io", "qemu-io's disk exerciser: read, write, aio, discard, map, alloc and more (see -c help)")
        {
            format, readOnly, commands, imageOpts, cache, noCache, aio, nativeAio, copyOnRead, misalign, discard, snapshot, forceShare, trace, objects, file,
        };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var mode = Storage.CacheMode.WriteBack;
            if (parse.GetValue(noCache)) mode = Storage.CacheMode.None;
            if (parse.GetValue(cache)?.LastOrDefault() is { } cacheName)
            {
                if (IoOpenSpec.ParseCache(cacheName) is not { } parsed)
                    throw new CommandException($"Invalid cache option: {cacheName}");
                mode = parsed;
            }
            if (parse.GetValue(aio)?.LastOrDefault() is { } aioName && aioName is not ("threads" or "native" or "io_uring"))
                throw new CommandException($"Invalid aio option: {aioName}");
            string? path = parse.GetValue(file);
            bool opts = parse.GetValue(imageOpts);
            string? fmt = parse.GetValue(format)?.LastOrDefault();
            if (opts && fmt is not null)
                throw new CommandException("--image-opts and --format are mutually exclusive");
            await using var interpreter = new IoInterpreter(Console.Out, Console.Error) { OpenFormat = fmt, DefaultImageOpts = opts };
            if (path is not null && !await interpreter.OpenAsync(new IoOpenSpec(path, fmt, parse.GetValue(readOnly), mode, opts, parse.GetValue(snapshot), parse.GetValue(forceShare)), ct))
                return 1;
            string[] lines = parse.GetValue(commands) ?? [];
            if (lines.Length == 0)
            {
                await interpreter.RunInteractiveAsync(Console.In, ct);
                return 0;
            }
            return await interpreter.RunAllAsync(lines, ct) ? 0 : 1;
        });
        return command;
    }
}
