using System.CommandLine;
using Qed.Operations;
using Qed.Formats.Qed;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed stream [-f fmt] [-b BASE [-F fmt]] [-p] FILE</c>: copies the backing chain's data (or, with -b, what the layers
/// above BASE supply) into a QED image and drops its backing file (or makes BASE the backing file): what QEMU does with a
/// block-stream job, which qemu-img has no command for.
/// </summary>
internal static class StreamCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (qed)" };
        var progress = new Option<bool>("-p") { Description = "Show progress" };
        var baseOption = new Option<string?>("-b") { Description = "Stream only the layers above BASE, which becomes the backing file (default: the whole chain)" };
        var baseFormat = new Option<string?>("-F") { Description = "BASE's format (checked; raw is recorded as no-probe)" };
        var file = new Argument<string>("FILE");
        var command = new Command("stream", "Copy the backing chain's data into the image, then drop the backing file") { format, progress, baseOption, baseFormat, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            await using var image = await ImageArgs.OpenAsync(parse.GetValue(file)!, parse.GetValue(format), readOnly: false, ct: ct);
            if (image is not QedImage qed)
                throw new NotSupportedException($"stream works on QED images; '{image.Name}' is {image.Format.Name()}");
            var options = new StreamOptions { Base = parse.GetValue(baseOption) };
            await ProgressDisplay.RunAsync(parse.GetValue(progress), "Streaming", async p =>
                await StreamOperation.RunAsync(qed, options, parse.GetValue(baseFormat), p, ct));
            return 0;
        });
        return command;
    }
}
