using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed commit [-f fmt] [-b base] [-d] [-p] FILE</c>, as qemu-img commit, except that a QED image is emptied. As in
/// qemu-img, <c>-b</c> implies <c>-d</c>: the image keeps its data and so still reads what it read before.
/// </summary>
internal static class CommitCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var baseOption = new Option<string?>("-b") { Description = "The backing layer to commit into (default: the image's backing file); implies -d" };
        var keep = new Option<bool>("-d") { Description = "Do not empty the image after the commit" };
        var showProgress = new Option<bool>("-p") { Description = "Show progress on stderr" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var cache = new Option<string?>("-t") { Description = "Accepted for qemu-img compatibility (the base is synced before the image is emptied)" };
        var file = new Argument<string>("FILE");
        var command = new Command("commit", "Write an image's data into its backing file, then empty the image") { format, baseOption, keep, showProgress, quiet, cache, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            var options = new CommitOptions { Base = parse.GetValue(baseOption), KeepTop = parse.GetValue(keep) || parse.GetResult(baseOption) != null };
            try
            {
                await ProgressDisplay.RunAsync(parse.GetValue(showProgress) && !parse.GetValue(quiet), "Committing", progress =>
                    CommitOperation.CommitAsync(path, parse.GetValue(format), options, progress, ct));
            }
            catch (CommitCopyException e)
            {
                // qemu-img's words for any failure of the copy itself (its commit runs as a block job), exit 1.
                throw new CommandException($"Block job failed: {CliRunner.Describe(e.InnerException!)}", e);
            }
            catch (Exception e) when (e is ImageFormatException or IOException)
            {
                string message = CliRunner.Describe(e);
                // As qemu-img: a backing file that cannot be opened is reported under the image that names it.
                if (message.StartsWith("Could not open backing file", StringComparison.Ordinal)) message = $"Could not open '{path}': {message}";
                throw new CommandException(message.StartsWith("Could not", StringComparison.Ordinal) ? message : $"Could not commit '{path}': {message}", e);
            }
            if (!parse.GetValue(quiet)) Console.WriteLine("Image committed.");
            return 0;
        });
        return command;
    }
}
