using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed defrag [-f qed] [-p] [-q] FILE</c>: rewrites a QED image's clusters in guest order and drops leaked space
/// (QEMU has no such command).
/// </summary>
internal static class DefragCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (qed)" };
        var progress = new Option<bool>("-p") { Description = "Show progress on stderr" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var file = new Argument<string>("FILE");
        var command = new Command("defrag", "Rewrite a QED image's clusters in guest order and shrink the file to what is referenced") { format, progress, quiet, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            string? fmt = parse.GetValue(format);
            if (fmt is not null and not ("qed" or "raw" or "qcow2")) throw new CommandException($"Unknown file format '{fmt}'");
            if (!File.Exists(path)) throw new CommandException($"Could not open '{path}': No such file or directory");
            DefragResult result = null!;
            try
            {
                await ProgressDisplay.RunAsync(parse.GetValue(progress) && !parse.GetValue(quiet), "Defragmenting", async p =>
                    result = await DefragOperation.DefragmentAsync(path, fmt, p, ct));
            }
            catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or InvalidDataException)
            {
                string message = CliRunner.Describe(e);
                throw new CommandException(message.StartsWith("Could not", StringComparison.Ordinal) ? message : $"Could not defragment '{path}': {message}", e);
            }
            if (!parse.GetValue(quiet))
                Console.WriteLine($"Image defragmented: {result.FileBytesBefore} -> {result.FileBytesAfter} bytes.");
            return 0;
        });
        return command;
    }
}
