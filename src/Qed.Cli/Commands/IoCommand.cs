using System.CommandLine;
using Qed.Cli.Io;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed io [-f fmt] [-r] [-U] -c CMD [-c CMD ...] FILE</c>: a qemu-io-like runner for <c>read [-P pattern] [-v] OFF LEN</c>,
/// <c>write [-P pattern | -z] OFF LEN</c>, <c>discard OFF LEN</c>, <c>flush</c> and <c>map</c>.
/// </summary>
internal static class IoCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var readOnly = new Option<bool>("-r") { Description = "Open read-only" };
        var forceShare = ImageArgs.ForceShareOption();
        var commands = new Option<string[]>("-c") { Description = "A command to run; repeat -c for several, run in order", Required = true };
        var file = new Argument<string>("FILE");
        var command = new Command("io", "Run qemu-io style read/write/discard/flush/map commands on an image") { format, readOnly, forceShare, commands, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            string path = parse.GetValue(file)!;
            bool ok = true;
            await using (var image = await ImageArgs.OpenAsync(path, parse.GetValue(format), parse.GetValue(readOnly), ct: ct, forceShare: parse.GetValue(forceShare)))
            {
                var interpreter = new IoInterpreter(image, Console.Out);
                foreach (string line in parse.GetValue(commands) ?? [])
                    ok &= await interpreter.RunAsync(line, ct);
            }
            return ok ? 0 : 1;
        });
        return command;
    }
}
