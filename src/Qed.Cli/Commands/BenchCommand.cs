using System.CommandLine;
using System.Globalization;
using Qed.Operations;
using Qed.Storage;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] [--no-drain] [-o offset] [--pattern=P] [-q]
/// [-s size] [-S step] [-t cache] [-w] FILE</c>: qemu-img bench's workload and output.
/// </summary>
internal static class BenchCommand
{
    public static Command Build()
    {
        var count = new Option<int>("-c") { Description = "Number of requests", DefaultValueFactory = _ => 75000 };
        var depth = new Option<int>("-d") { Description = "Requests in flight", DefaultValueFactory = _ => 64 };
        var format = new Option<string?>("-f") { Description = "Image format" };
        var flushInterval = new Option<int>("--flush-interval") { Description = "Flush after every N requests" };
        var noDrain = new Option<bool>("--no-drain") { Description = "Flush without waiting for requests in flight" };
        var offset = new Option<string>("-o") { Description = "Offset of the first request", DefaultValueFactory = _ => "0" };
        var pattern = new Option<int>("--pattern") { Description = "Byte to write", DefaultValueFactory = _ => 0 };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var size = new Option<string>("-s") { Description = "Bytes per request", DefaultValueFactory = _ => "4096" };
        var step = new Option<string?>("-S") { Description = "Distance between request offsets" };
        var cache = new Option<string>("-t") { Description = "Cache mode: none, writeback, writethrough, directsync, unsafe", DefaultValueFactory = _ => "writeback" };
        var write = new Option<bool>("-w") { Description = "Write instead of read" };
        var aio = new Option<string?>("-i") { Description = "AIO mode (accepted for compatibility; ignored)" };
        var native = new Option<bool>("-n") { Description = "Native AIO (accepted for compatibility; ignored)" };
        var forceShare = ImageArgs.ForceShareOption();
        var file = new Argument<string>("FILE");
        var command = new Command("bench", "Run a simple image benchmark")
            { count, depth, format, flushInterval, noDrain, offset, pattern, quiet, size, step, cache, write, aio, native, forceShare, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var options = new BenchmarkOptions
            {
                Count = parse.GetValue(count),
                Depth = parse.GetValue(depth),
                // qemu-img's bounds and words, with the value named.
                BufferSize = (int)SizeParser.Parse(parse.GetValue(size)!, "buffer size", int.MaxValue),
                Step = parse.GetValue(step) is { } s ? SizeParser.Parse(s, "step_size", int.MaxValue) : 0,
                Offset = SizeParser.Parse(parse.GetValue(offset)!, "offset", long.MaxValue),
                Write = parse.GetValue(write),
                Pattern = (byte)parse.GetValue(pattern),
                FlushInterval = parse.GetValue(flushInterval),
                NoDrain = parse.GetValue(noDrain),
            };
            Benchmark.Validate(options);
            bool q = parse.GetValue(quiet);
            ImageArgs.CheckForceShare(parse.GetValue(file)!, !options.Write, parse.GetValue(forceShare));
            await using var image = await DiskImage.OpenAsync(parse.GetValue(file)!, new ImageOpenOptions
            {
                Format = ImageFormatNames.FromName(parse.GetValue(format)),
                ReadOnly = !options.Write,
                Cache = CacheModes.Parse(parse.GetValue(cache)!),
                ForceShare = parse.GetValue(forceShare),
            }, ct);
            ProbeWarning.PrintIfProbedRaw(image, parse.GetValue(file)!);
            if (!q)
            {
                Console.WriteLine($"Sending {options.Count} {(options.Write ? "write" : "read")} requests, {options.BufferSize} bytes each, " +
                    $"{options.Depth} in parallel (starting at offset {options.Offset}, step size {(options.Step == 0 ? options.BufferSize : options.Step)})");
                if (options.FlushInterval > 0)
                    Console.WriteLine($"Sending flush every {options.FlushInterval} requests");
            }
            var elapsed = await Benchmark.RunAsync(image, options, ct);
            if (!q) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Run completed in {elapsed.TotalSeconds:F3} seconds."));
            return 0;
        });
        return command;
    }
}
