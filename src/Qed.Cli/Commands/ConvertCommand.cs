using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed convert [-f fmt] [-O fmt] [-o opts] [-B file -F fmt] [-p] [-n] [-S size] [-m n] SRC DST</c>, as qemu-img
/// convert: the target stays sparse, and with -B only what differs from the backing file is written.
/// </summary>
internal static class ConvertCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Source format (probed if omitted)" };
        var outFormat = new Option<string>("-O") { Description = "Target format (qed, qcow2, raw)", DefaultValueFactory = _ => "raw" };
        var options = new Option<string[]>("-o") { Description = "Target format options: cluster_size=, table_size= (qed), compat= (qcow2: 0.10 or 1.1), backing_file=, backing_fmt=" };
        var backing = new Option<string?>("-B") { Description = "Backing file of the target: only data that differs from it is written" };
        var backingFormat = new Option<string?>("-F") { Description = "Format of the -B backing file" };
        var showProgress = new Option<bool>("-p") { Description = "Show progress on stderr" };
        var noCreate = new Option<bool>("-n") { Description = "Do not create the target: write into an existing image" };
        var targetIsZero = new Option<bool>("--target-is-zero") { Description = "With -n: the existing target reads as zeroes, so zero ranges are not written" };
        var sparse = new Option<string?>("-S") { Description = "All-zero runs of this size are not written (default 4k; 0 writes everything)" };
        var parallel = new Option<int>("-m") { Description = "Chunk copies in flight (1 to 16, default 8)", DefaultValueFactory = _ => 8 };
        var cache = new Option<string>("-t") { Description = "Cache mode of the target: unsafe (qemu-img's default for convert: no sync), writeback (sync at the end), writethrough, none, directsync", DefaultValueFactory = _ => "unsafe" };
        var sourceCache = new Option<string?>("-T") { Description = "Accepted for qemu-img compatibility (sources are read through the host cache)" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var forceShare = ImageArgs.ForceShareOption();
        var outOfOrder = new Option<bool>("-W") { Description = "Accepted for qemu-img compatibility (writes are always out of order)" };
        var salvage = new Option<bool>("--salvage") { Description = "Copy what can be read: a sector whose read fails is written as zeroes, with a warning" };
        var compress = new Option<bool>("-c") { Description = "Compress the target (qcow2 only in qemu-img; qed does not write compressed qcow2 clusters and refuses)" };
        var rate = new Option<string?>("-r") { Description = "Accepted for qemu-img compatibility: the rate limit is checked but not applied" };
        var copyOffload = new Option<bool>("-C") { Description = "Accepted for qemu-img compatibility (copy offloading: the data is copied the same way)" };
        var snapshot = new Option<string?>("-l") { Description = "Source snapshot: refused, as by qemu-img, for formats without internal snapshots" };
        var bitmaps = new Option<bool>("--bitmaps") { Description = "Copy persistent bitmaps: refused, as by qemu-img, for sources without them (QED, raw)" };
        var src = new Argument<string>("SRC");
        var dst = new Argument<string>("DST");
        var command = new Command("convert", "Copy an image into a new image of any format, keeping it sparse")
        {
            format, outFormat, options, backing, backingFormat, showProgress, noCreate, targetIsZero, sparse, parallel, cache, sourceCache, quiet, forceShare, outOfOrder, salvage, compress, rate, copyOffload, snapshot, bitmaps, src, dst,
        };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string srcPath = parse.GetValue(src)!, dstPath = parse.GetValue(dst)!;
            string targetFormat = parse.GetValue(outFormat)!;
            var opts = OptionList.Parse(parse.GetValue(options) ?? []);
            string? b = parse.GetValue(backing) ?? opts.Take("backing_file");
            string? bf = parse.GetValue(backingFormat) ?? opts.Take("backing_fmt");
            if (b != null && bf == null) throw new CommandException("Backing file specified without backing format");
            int minSparse = 4096;
            if (parse.GetValue(sparse) is { } s)
            {
                if (!SizeParser.TryParse(s, out long n) || n < 0 || n > 1 << 20 || (n > 0 && (1 << 20) % n != 0))
                    throw new CommandException($"Invalid buffer size for sparse output specified: '{s}' (use 0 or a power of 2 up to 1M)");
                minSparse = (int)n;
            }
            int inFlight = parse.GetValue(parallel);
            if (inFlight is < 1 or > 16) throw new CommandException($"Invalid number of coroutines: {inFlight} (allowed: 1 to 16)");
            if (parse.GetValue(rate) is { } r && !SizeParser.TryParse(r, out _))
            {
                Console.Error.WriteLine("qed: Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for");
                Console.Error.WriteLine("qed: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
                return 1;
            }
            if (parse.GetValue(compress))
            {
                if (targetFormat != "qcow2") throw new CommandException("Compression not supported for this file format");
                throw new CommandException("Compression not supported by qed: it does not write compressed qcow2 clusters (convert without -c)");
            }
            bool create = !parse.GetValue(noCreate);
            var cacheMode = Storage.CacheModes.Parse(parse.GetValue(cache)!);
            bool zeroed = parse.GetValue(targetIsZero);
            if (zeroed && create) throw new CommandException("--target-is-zero requires use of -n flag");
            if (zeroed && b != null) throw new CommandException("--target-is-zero cannot be used with a backing file (-B)");

            // The source is opened (and so validated) before the target is touched.
            bool shared = parse.GetValue(forceShare);
            await using var source = await ImageArgs.OpenAsync(srcPath, parse.GetValue(format), readOnly: true, ct: ct, forceShare: shared);
            // Observed on qemu-img 7.2, for QED and raw sources: neither has internal snapshots or persistent bitmaps.
            if (parse.GetValue(snapshot) != null)
                throw new CommandException($"Failed to load snapshot: Block format '{source.Format.Name()}' used by device '' does not support temporarily loading internal snapshots");
            if (parse.GetValue(bitmaps)) throw new CommandException("Source lacks bitmap support");
            // Creating (truncating) or writing a file the source is read from would destroy the data being copied. By
            // any name (a hard link, a symlink): the same device and inode. Without -U this is the lock conflict
            // qemu-img reports (the source's read lock does not share "write"), in its words; with -U qemu-img would
            // go ahead and destroy the source, so qed refuses in its own.
            if (ConvertOperation.FindLayerInFile(source, dstPath) is { } layer)
            {
                if (shared) throw new CommandException($"Could not write '{dstPath}': it is part of the source image chain ('{layer.Name}')");
                throw TargetLocked(create, dstPath, targetFormat, new ImageLockedException(dstPath, "Failed to get \"write\" lock"));
            }
            bool existed = File.Exists(dstPath) || Directory.Exists(dstPath) || new FileInfo(dstPath).LinkTarget != null;
            if (create)
            {
                try { await ImageCreator.CreateAsync(targetFormat, dstPath, source.Size, opts, b, bf, unsafeBacking: false, ct); }
                catch (ImageLockedException e) { throw TargetLocked(create: true, dstPath, targetFormat, e); }
                catch (CreateRefusedException e) { throw new CommandException($"{dstPath}: error while converting {targetFormat}: {e.Message}", e); }
            }
            else opts.ThrowIfAnyLeft(targetFormat);
            try
            {
                await using var target = await ImageArgs.OpenAsync(dstPath, targetFormat, readOnly: false, ct: ct, cache: cacheMode);
                // qemu-img's warnings for each sector --salvage gives up on, its read or its allocation query (observed
                // on qemu-img 7.2): "warning: error while reading offset N: reason" and "warning: error while reading
                // block status at offset N: reason".
                bool salvaging = parse.GetValue(salvage);
                Action<long, IOException>? onReadError = salvaging
                    ? (at, e) => Console.Error.WriteLine($"{CliRunner.ProgramName}: warning: error while reading offset {at}: {CliRunner.Describe(e)}")
                    : null;
                Action<long, IOException>? onStatusError = salvaging
                    ? (at, e) => Console.Error.WriteLine($"{CliRunner.ProgramName}: warning: error while reading block status at offset {at}: {CliRunner.Describe(e)}")
                    : null;
                var copy = new ConvertOptions
                {
                    TargetIsZeroed = create || zeroed, MinSparse = minSparse, Parallelism = inFlight,
                    OnReadError = onReadError, OnBlockStatusError = onStatusError,
                };
                await ProgressDisplay.RunAsync(parse.GetValue(showProgress) && !parse.GetValue(quiet), "Converting", progress =>
                    ConvertOperation.CopyAsync(source, target, copy, progress, ct));
            }
            catch when (create && !existed)
            {
                // A half-written new image is worse than none; but a name that was there before is never removed.
                try { File.Delete(dstPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw;
            }
            return 0;
        });
        return command;
    }

    /// <summary>qemu-img's words for a target in use: at create "FILE: error while converting FMT: ...", else "Could not open 'FILE': ...".</summary>
    private static CommandException TargetLocked(bool create, string path, string format, ImageLockedException e) =>
        new(create ? $"{path}: error while converting {format}: {e.Reason}" : $"Could not open '{path}': {e.Reason}", e);
}
