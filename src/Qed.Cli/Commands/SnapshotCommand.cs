using System.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed snapshot [-q] [-U] [-l | -a NAME | -c NAME | -d NAME] FILE</c>, qemu-img snapshot's answers for formats
/// without internal snapshots (QED and raw), as observed on qemu-img 7.2: the list (the default) is empty and exits
/// 0; creating, applying and deleting fail with its words and exit 1. qemu-img 7.2's snapshot takes no <c>-f</c>.
/// qcow2 internal snapshots are not implemented, so on a qcow2 image every action is refused, naming that.
/// </summary>
internal static class SnapshotCommand
{
    public static Command Build()
    {
        var list = new Option<bool>("-l") { Description = "List the snapshots (the default): QED and raw images have none" };
        var apply = new Option<string?>("-a") { Description = "Apply a snapshot (refused: the format has no snapshots)" };
        var create = new Option<string?>("-c") { Description = "Create a snapshot (refused: the format has no snapshots)" };
        var delete = new Option<string?>("-d") { Description = "Delete a snapshot (refused: there is none)" };
        var quiet = new Option<bool>("-q") { Description = "Quiet" };
        var forceShare = ImageArgs.ForceShareOption();
        var files = new Argument<string[]>("FILE") { Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("snapshot", "List, create, apply or delete internal snapshots (QED and raw have none)")
        {
            list, apply, create, delete, quiet, forceShare, files,
        };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            int actions = (parse.GetValue(list) ? 1 : 0) + new[] { apply, create, delete }.Count(o => parse.GetResult(o) != null);
            if (actions > 1) return Usage("Cannot mix '-l', '-a', '-c', '-d'");
            string[] paths = parse.GetValue(files) ?? [];
            if (paths.Length != 1) return Usage("Expecting one image file name");
            string path = paths[0];
            string? name = parse.GetValue(apply) ?? parse.GetValue(create) ?? parse.GetValue(delete);
            bool readOnly = name is null;
            await using var image = await ImageArgs.OpenAsync(path, null, readOnly, ct: ct, forceShare: parse.GetValue(forceShare));
            ProbeWarning.PrintIfProbedRaw(image, path);
            if (image.Format == ImageFormat.Qcow2) throw new CommandException($"'{path}': qcow2 internal snapshots are not supported by qed");
            if (parse.GetValue(apply) is { } a)
            {
                // Observed: qemu-img opens the image a second time to apply, and so warns about a probed raw twice.
                ProbeWarning.PrintIfProbedRaw(image, path);
                throw new CommandException($"Could not apply snapshot '{a}': Block driver does not support snapshots");
            }
            if (parse.GetValue(create) is { } c) throw new CommandException($"Could not create snapshot '{c}': -95 (Operation not supported)");
            if (parse.GetValue(delete) is { } d) throw new CommandException($"Could not delete snapshot '{d}': snapshot not found");
            return 0;
        });
        return command;
    }

    /// <summary>qemu-img's usage error: the message, then where to find help.</summary>
    internal static int Usage(string message)
    {
        Console.Error.WriteLine($"qed: {message}");
        Console.Error.WriteLine("Try 'qed --help' for more information");
        return 1;
    }
}
