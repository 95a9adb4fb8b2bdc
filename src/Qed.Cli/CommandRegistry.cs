using System.CommandLine;
using Qed.Cli.Commands;

namespace Qed.Cli;

/// <summary>Every command of the tool, in the order help lists them. Each lives in Commands/NameCommand.cs.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All()
    {
        yield return CreateCommand.Build();
        yield return ServeCommand.Build();
    }
}
