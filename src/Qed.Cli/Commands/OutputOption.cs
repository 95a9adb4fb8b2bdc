using System.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>qemu-img's <c>--output=human|json</c>.</summary>
internal static class OutputOption
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--output") { Description = "Output format: human or json", DefaultValueFactory = _ => "human" };
        // One line, as every other error (AcceptOnlyFromAmong lists the choices over several lines).
        option.Validators.Add(result =>
        {
            string? value = result.GetValueOrDefault<string>();
            if (value is not ("human" or "json")) result.AddError($"--output must be 'human' or 'json', not '{value}'");
        });
        return option;
    }

    public static bool IsJson(ParseResult parse, Option<string> option) => parse.GetValue(option) == "json";
}
