using System.CommandLine;
using System.CommandLine.Parsing;
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
        yield return MigrateCommand.Build();
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

    /// <summary>
    /// What is wrong with the command line, in qemu-img's words, or null: an option no command knows is
    /// <c>unrecognized option '-Z'</c> (naming that option, not the token after it, which System.CommandLine would
    /// name after binding <c>-Z</c> as the file name); anything else is the parser's first error. A token after
    /// <c>--</c>, the value of an option, or a negative size (<c>resize FILE -1G</c>) is not an option.
    /// </summary>
    public static string? UsageError(ParseResult parse)
    {
        var optionValues = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        for (CommandResult? result = parse.CommandResult; result != null; result = result.Parent as CommandResult)
            foreach (var child in result.Children)
                if (child is OptionResult option)
                    foreach (var token in option.Tokens) optionValues.Add(token);
        foreach (var token in parse.Tokens)
        {
            if (token.Type == TokenType.DoubleDash) break;
            if (token.Type == TokenType.Argument && !optionValues.Contains(token) && token.Value.Length > 1 && token.Value[0] == '-'
                && !char.IsAsciiDigit(token.Value[1]) && token.Value[1] != '.')
                // qemu-io words an unknown short option as getopt does; qemu-img (and a long option) as here.
                return parse.CommandResult.Command.Name == "io" && token.Value[1] != '-'
                    ? $"invalid option -- '{token.Value[1]}'"
                    : $"unrecognized option '{token.Value}'";
        }
        return parse.Errors.Count > 0 ? parse.Errors[0].Message : null;
    }
}
