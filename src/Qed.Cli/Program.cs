using System.CommandLine;
using Qed.Cli;

// qed: a qemu-img-compatible tool for QED, raw and qcow2 images. Commands live in Commands/, one file each.
var root = new RootCommand("qed: create, inspect, check, convert and serve QED disk images (qemu-img compatible)");
root.Add(CliRunner.DebugOption);
foreach (var command in CommandRegistry.All()) root.Add(command);

// Response files (@name) are off: image names may start with '@'.
var parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
if (CommandRegistry.UsageError(parse) is { } usage)
{
    // qemu-img's two lines and exit code for a command line it cannot take.
    Console.Error.WriteLine($"{CliRunner.ProgramName}: {usage}");
    Console.Error.WriteLine($"Try '{CliRunner.ProgramName} --help' for more information");
    return 1;
}
return await parse.InvokeAsync(new InvocationConfiguration
{
    EnableDefaultExceptionHandler = false,
    // On SIGINT/SIGTERM the command's token is cancelled and it gets this long to finish cleanly (serve lets
    // in-flight NBD requests finish and closes its images) before the process exits anyway.
    ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
});
