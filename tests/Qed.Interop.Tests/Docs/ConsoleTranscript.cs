using System.Text;
using System.Text.RegularExpressions;

namespace Qed.Interop.Tests.Docs;

/// <summary>One command of a transcript and the output the markdown shows for it.</summary>
public sealed record TranscriptStep(int Line, string Command, IReadOnlyList<string> Expected);

/// <summary>
/// A <c>console</c> block read as a transcript: a line starting with <c>$ </c> is a command (a trailing backslash
/// continues it on the next line), and the lines after it, up to the next command, are what it prints (standard output
/// and standard error as a terminal shows them). Output is compared line for line and exactly, with two documented
/// normalisations only: a carriage return (a progress meter redrawing its line) ends a line as a newline does, and an
/// expected line that matches one of the block's <c>varies:</c> patterns (<c>*</c> is any text) accepts any output
/// line matching the same pattern.
/// </summary>
public static class ConsoleTranscript
{
    /// <summary>The commands of <paramref name="block"/> and their expected output.</summary>
    public static IReadOnlyList<TranscriptStep> Steps(DocBlock block)
    {
        var steps = new List<TranscriptStep>();
        for (int i = 0; i < block.Body.Count; i++)
        {
            string line = block.Body[i];
            if (!line.StartsWith("$ ", StringComparison.Ordinal))
                throw new InvalidDataException($"{block.File}:{block.Line + 1 + i}: a console block must start with a '$ ' command, found '{line}'");
            int at = block.Line + 1 + i;
            var command = new StringBuilder(line[2..]);
            while (command.Length > 0 && command[^1] == '\\' && i + 1 < block.Body.Count)
                command.Append('\n').Append(block.Body[++i]);
            var expected = new List<string>();
            while (i + 1 < block.Body.Count && !block.Body[i + 1].StartsWith("$ ", StringComparison.Ordinal))
                expected.Add(block.Body[++i]);
            steps.Add(new TranscriptStep(at, command.ToString(), expected));
        }
        return steps;
    }

    /// <summary>Output split into lines as compared: '\n' and '\r' both end a line; a final line ending adds no line.</summary>
    public static IReadOnlyList<string> Lines(string output)
    {
        var lines = output.Replace("\r\n", "\n").Split('\n', '\r').ToList();
        if (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        return lines;
    }

    /// <summary>Whether an output line matches the line the markdown shows, given the block's varies patterns.</summary>
    public static bool LineMatches(string expected, string actual, IReadOnlyList<string> varies) =>
        expected == actual || varies.Any(p => Glob(p).IsMatch(expected) && Glob(p).IsMatch(actual));

    /// <summary>
    /// Runs every step in <paramref name="cwd"/> in order and returns one message per step whose output differs, or
    /// an empty list when the transcript is exact.
    /// </summary>
    public static IReadOnlyList<string> Run(DocBlock block, Shell shell, string cwd)
    {
        var failures = new List<string>();
        int previousExit = 0;
        foreach (var step in Steps(block))
        {
            var (exit, output) = shell.Run(cwd, step.Command, previousExit);
            previousExit = exit;
            var actual = Lines(output);
            bool same = actual.Count == step.Expected.Count
                && step.Expected.Zip(actual).All(p => LineMatches(p.First, p.Second, block.Varies));
            if (!same)
                failures.Add($"{block.File}:{step.Line}: $ {step.Command}\n--- the markdown shows:\n{string.Join('\n', step.Expected)}\n"
                    + $"--- qed printed (exit {exit}):\n{string.Join('\n', actual)}");
        }
        return failures;
    }

    private static Regex Glob(string pattern) =>
        new("^" + string.Join(".*", pattern.Split('*').Select(Regex.Escape)) + "$", RegexOptions.CultureInvariant);
}
