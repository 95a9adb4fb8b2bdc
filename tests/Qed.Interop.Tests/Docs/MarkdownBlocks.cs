using System.Text.RegularExpressions;

namespace Qed.Interop.Tests.Docs;

/// <summary>
/// Finds the fenced code blocks of the project's markdown (README.md and docs/*.md) and the marker comments that say
/// how the docs tests treat each one. A marker is an HTML comment alone on a line (invisible when rendered), on the
/// lines directly before the opening fence:
/// <list type="bullet">
/// <item><c>&lt;!-- setup: CMD --&gt;</c>: a shell command run (and required to exit 0) in the block's folder before
/// the block, for files the block uses but does not make itself. Several run in order.</item>
/// <item><c>&lt;!-- not run: REASON --&gt;</c>: the block is not run (instructions for a fresh machine, runs of hours).
/// Every other <c>console</c>, <c>sh</c> and <c>csharp</c> block runs.</item>
/// <item><c>&lt;!-- varies: PATTERN --&gt;</c> (console only): an expected output line that matches PATTERN, where
/// <c>*</c> stands for any text, matches any output line that matches the same PATTERN. The pattern is the text after
/// "varies: " up to " --&gt;", leading spaces included (indented JSON lines). Only for what honestly
/// changes between runs (timings, sizes the filesystem decides); everything else is compared exactly.</item>
/// <item><c>&lt;!-- continued --&gt;</c>: the block runs after the previous block of the file, in the same folder
/// (one session spread over several sections).</item>
/// </list>
/// Languages: <c>console</c> (a transcript, see <see cref="ConsoleTranscript"/>), <c>sh</c> (a script that must exit
/// 0), <c>csharp</c> (compiled against Qed.Core and run, see <see cref="CSharpSnippet"/>), and <c>text</c> (not code:
/// trees, synopses). A fence without a language, or with another one, is an error, so no example escapes the tests.
/// </summary>
public static partial class MarkdownBlocks
{
    /// <summary>The languages a block may have.</summary>
    public static readonly IReadOnlySet<string> Languages = new HashSet<string> { "console", "sh", "csharp", "text" };

    /// <summary>
    /// Markdown files left out, each with the reason: docs/architecture.md is being written by another task and
    /// holds diagrams, not examples.
    /// </summary>
    public static readonly IReadOnlySet<string> Excluded = new HashSet<string> { "docs/architecture.md" };

    /// <summary>The repository root: the nearest folder above the test binaries holding Qed.slnx.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Qed.slnx"))) return dir.FullName;
            throw new InvalidOperationException($"No Qed.slnx above {AppContext.BaseDirectory}: the docs tests run from the repository's build output");
        }
    }

    /// <summary>README.md and docs/*.md (less <see cref="Excluded"/>), relative to the root, in a fixed order.</summary>
    public static IReadOnlyList<string> Files(string root)
    {
        var files = new List<string> { "README.md" };
        files.AddRange(Directory.GetFiles(Path.Combine(root, "docs"), "*.md")
            .Select(f => "docs/" + Path.GetFileName(f))
            .Where(f => !Excluded.Contains(f))
            .Order(StringComparer.Ordinal));
        return files;
    }

    /// <summary>Every block of every file under <paramref name="root"/>.</summary>
    public static IReadOnlyList<DocBlock> All(string root) =>
        Files(root).SelectMany(f => Parse(f, File.ReadAllLines(Path.Combine(root, f)))).ToList();

    /// <summary>The blocks of one markdown text; <paramref name="file"/> only names it in messages.</summary>
    public static IReadOnlyList<DocBlock> Parse(string file, IReadOnlyList<string> lines)
    {
        var blocks = new List<DocBlock>();
        for (int i = 0; i < lines.Count; i++)
        {
            var open = Fence().Match(lines[i]);
            if (!open.Success) continue;
            string fence = open.Groups["fence"].Value;
            string language = open.Groups["info"].Value.Trim();
            int start = i;
            var body = new List<string>();
            for (i++; i < lines.Count && lines[i].Trim() != fence; i++) body.Add(lines[i]);
            var problems = new List<string>();
            if (i == lines.Count) problems.Add("the block is never closed");

            var setup = new List<string>();
            var varies = new List<string>();
            string? notRun = null;
            bool continues = false;
            int first = start;
            while (first > 0 && Marker().IsMatch(lines[first - 1])) first--;
            for (int m = first; m < start; m++)
            {
                string marker = Marker().Match(lines[m]).Groups["text"].Value.Trim();
                if (Take(marker, "setup:") is { } command) setup.Add(command.Trim());
                else if (Take(marker, "not run:") is { } reason) notRun = reason.Trim();
                else if (Take(marker, "varies:") is { } pattern) varies.Add(pattern.Length > 0 && pattern[0] == ' ' ? pattern[1..] : pattern);
                else if (marker == "continued") continues = true;
                else problems.Add($"unknown marker '<!-- {marker} -->' (setup:, not run:, varies: or continued)");
            }
            if (notRun is "") problems.Add("'not run:' needs a reason");
            if (setup.Any(s => s.Length == 0)) problems.Add("'setup:' needs a command");
            blocks.Add(new DocBlock(file, start + 1, language, body, setup, notRun, varies, continues, problems));
        }
        return blocks;
    }

    /// <summary>The text after <paramref name="keyword"/>, untrimmed: a varies pattern keeps its leading spaces.</summary>
    private static string? Take(string marker, string keyword) =>
        marker.StartsWith(keyword, StringComparison.Ordinal) ? marker[keyword.Length..] : null;

    [GeneratedRegex(@"^ {0,3}(?<fence>`{3,})(?<info>[^`]*)$")]
    private static partial Regex Fence();

    [GeneratedRegex(@"^<!--(?<text>.*)-->\s*$")]
    private static partial Regex Marker();
}
