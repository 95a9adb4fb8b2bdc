using System.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>qemu-img's <c>--output=human|json</c>.</summary>
internal static class OutputOption
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--output") { Description = "Output format: human or json", DefaultValueFactory = _ => "human" };
        option.AcceptOnlyFromAmong("human", "json");
        return option;
    }

    public static bool IsJson(ParseResult parse, Option<string> option) => parse.GetValue(option) == "json";
}
