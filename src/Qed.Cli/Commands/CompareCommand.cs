using System.CommandLine;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed compare [-f fmt] [-F fmt] [-s] A B</c>, as qemu-img compare: exit 0 when the guest contents are identical,
/// 1 when they differ (naming the first differing sector), 2 on error.
/// </summary>
internal static class CompareCommand
{
    public static Command Build()
    {
        var formatA = new Option<string?>("-f") { Description = "Format of the first image (probed if omitted)" };
        var formatB = new Option<string?>("-F") { Description = "Format of the second image (probed if omitted)" };
        var strict = new Option<bool>("-s") { Description = "Strict: the images must also have the same size and the same allocation (block status)" };
        var quiet = new Option<bool>("-q") { Description = "Quiet: only the exit code tells" };
        var forceShare = ImageArgs.ForceShareOption();
        var progress = new Option<bool>("-p") { Description = "Accepted for qemu-img compatibility" };
        var imageOpts = ImageOptsArgs.Option();
        var a = new Argument<string>("A");
        var b = new Argument<string>("B");
        var command = new Command("compare", "Check whether two images have the same guest content") { formatA, formatB, strict, quiet, forceShare, progress, imageOpts, a, b };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            // --image-opts makes both operands option strings, as in qemu-img.
            bool opts = parse.GetValue(imageOpts);
            var (pathA, fmtA) = ImageOptsArgs.Resolve(parse.GetValue(a)!, opts, parse.GetValue(formatA));
            var (pathB, fmtB) = ImageOptsArgs.Resolve(parse.GetValue(b)!, opts, parse.GetValue(formatB));
            await using var imageA = await ImageArgs.OpenAsync(pathA, fmtA, readOnly: true, ct: ct, forceShare: parse.GetValue(forceShare));
            await using var imageB = await ImageArgs.OpenAsync(pathB, fmtB, readOnly: true, ct: ct, forceShare: parse.GetValue(forceShare));
            bool isStrict = parse.GetValue(strict);
            var result = await CompareOperation.CompareAsync(imageA, imageB, isStrict, ct);
            var say = parse.GetValue(quiet) ? TextWriter.Null : Console.Out;
            if (result.SizeMismatch)
            {
                if (isStrict)
                {
                    say.WriteLine("Strict mode: Image size mismatch!");
                    return 1;
                }
                // qemu-img warns only once it reaches the extra part, i.e. when the common part is the same.
                if (!result.InCommonPart) say.WriteLine("Warning: Image size mismatch!");
            }
            if (result.StatusMismatch)
            {
                say.WriteLine($"Strict mode: Offset {result.MismatchOffset} block status mismatch!");
                return 1;
            }
            if (!result.Identical)
            {
                say.WriteLine($"Content mismatch at offset {result.MismatchOffset}!");
                return 1;
            }
            say.WriteLine("Images are identical.");
            return 0;
        }, errorExitCode: 2);
        return command;
    }
}
