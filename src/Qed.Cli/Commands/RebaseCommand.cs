using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed rebase [-f fmt] [-u] [-U] -b backing -F fmt [-p] FILE</c>, as qemu-img rebase (QED and qcow2 images): -F is
/// required with a new backing file, as in qemu-img 7.2.
/// </summary>
internal static class RebaseCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted; qed or qcow2)" };
        var unsafeMode = new Option<bool>("-u") { Description = "Unsafe: change the header only, copy nothing" };
        var backing = new Option<string?>("-b") { Description = "The new backing file ('' for none)" };
        var backingFormat = new Option<string?>("-F") { Description = "Format of the new backing file (raw sets NO_PROBE)" };
        var showProgress = new Option<bool>("-p") { Description = "Show progress on stderr" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var cache = new Option<string?>("-t") { Description = "Accepted for qemu-img compatibility" };
        var sourceCache = new Option<string?>("-T") { Description = "Accepted for qemu-img compatibility" };
        var forceShare = new Option<bool>("-U", "--force-share") { Description = "Open the new backing file shared, even while another process writes it (as qemu-img, only that file)" };
        var file = new Argument<string>("FILE");
        var command = new Command("rebase", "Change the backing file of an image") { format, unsafeMode, backing, backingFormat, showProgress, quiet, cache, sourceCache, forceShare, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            if (parse.GetResult(backing) is null) throw new CommandException("Must specify backing file (-b) or use '-b \"\"' to remove it");
            string? b = parse.GetValue(backing);
            string? bf = parse.GetValue(backingFormat);
            if (!string.IsNullOrEmpty(b) && bf is null)
            {
                // As qemu-img: a new backing file needs its format named (a probed one could be read as another
                // format). Errors opening the image come first, as there.
                await using (await ImageArgs.OpenAsync(path, parse.GetValue(format), readOnly: true, noBacking: true, ct: ct)) { }
                throw new CommandException($"Could not change the backing file to '{b}': backing format must be specified");
            }
            try
            {
                await ProgressDisplay.RunAsync(parse.GetValue(showProgress) && !parse.GetValue(quiet), "Rebasing", progress =>
                    RebaseOperation.RebaseAsync(path, parse.GetValue(format), b, bf, safe: !parse.GetValue(unsafeMode),
                        forceShare: parse.GetValue(forceShare), progress, ct));
            }
            catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException)
            {
                string message = CliRunner.Describe(e);
                throw new CommandException(message.StartsWith("Could not", StringComparison.Ordinal) ? message : $"Could not rebase '{path}': {message}", e);
            }
            return 0;
        });
        return command;
    }
}
