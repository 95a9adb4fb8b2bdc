using System.CommandLine;
using Qed.Cli.Commands;

namespace Qed.Cli;

/// <summary>Every command of the tool, in the order help lists them. Each lives in Commands/NameCommand.cs.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All()
    {
        yield return CreateCommand.Build();
        yield return InfoCommand.Build();
        yield return MapCommand.Build();
        yield return ConvertCommand.Build();
        yield return DdCommand.Build();
        yield return SnapshotCommand.Build();
        yield return BitmapCommand.Build();
        yield return CompareCommand.Build();
        yield return ResizeCommand.Build();
        yield return CommitCommand.Build();
        yield return RebaseCommand.Build();
        yield return MeasureCommand.Build();
        yield return AmendCommand.Build();
        yield return IoCommand.Build();
        yield return BenchCommand.Build();
        yield return StreamCommand.Build();
        yield return DefragCommand.Build();
        yield return CheckCommand.Build();
        yield return ServeCommand.Build();
    }
}
