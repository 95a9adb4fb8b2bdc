using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Docs;

/// <summary>
/// Every code example in README.md and docs/*.md runs as the markdown shows it: console transcripts print exactly the
/// output written under each command, sh scripts exit 0, C# examples compile against Qed.Core and run. Each session
/// (a block, plus the blocks marked <c>continued</c> after it) runs in a fresh scratch folder with the <c>qed</c>
/// under test on PATH. The markers are described on <see cref="MarkdownBlocks"/>.
/// </summary>
public class DocExamplesTests
{
    /// <summary>The first block of every session that runs, as <c>file:line</c>.</summary>
    public static TheoryData<string> Sessions()
    {
        var data = new TheoryData<string>();
        foreach (var session in SessionsOf(MarkdownBlocks.All(MarkdownBlocks.RepositoryRoot)))
            data.Add(session[0].Where);
        return data;
    }

    [Theory]
    [MemberData(nameof(Sessions))]
    public void ExampleRunsAsShown(string where)
    {
        var session = SessionsOf(MarkdownBlocks.All(MarkdownBlocks.RepositoryRoot)).Single(s => s[0].Where == where);
        using var dir = new TempDir();
        using var shell = new Shell();
        var failures = new List<string>();
        foreach (var block in session) failures.AddRange(RunBlock(block, shell, dir.Path));
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    [Fact]
    public void EveryBlockIsRunOrMarked()
    {
        var blocks = MarkdownBlocks.All(MarkdownBlocks.RepositoryRoot);
        var problems = Problems(blocks);
        Assert.True(problems.Count == 0, string.Join('\n', problems));
        // The files are really read: README's library example and the CLI tour's transcripts are among the blocks.
        Assert.Contains(blocks, b => b.File == "README.md" && b.Language == "csharp" && b.NotRunReason is null);
        Assert.Contains(blocks, b => b.File == "docs/cli-tour.md" && b.Language == "console" && b.NotRunReason is null);
    }

    /// <summary>Runs one block's setup and the block itself in <paramref name="cwd"/>; returns what went wrong.</summary>
    internal static IReadOnlyList<string> RunBlock(DocBlock block, Shell shell, string cwd)
    {
        foreach (string command in block.Setup)
        {
            var (exit, output) = shell.Run(cwd, command, exitOnError: true);
            if (exit != 0) return [$"{block.Where}: setup '{command}' exited {exit}:\n{output}"];
        }
        switch (block.Language)
        {
            case "console":
                return ConsoleTranscript.Run(block, shell, cwd);
            case "sh":
            {
                var (exit, output) = shell.Run(cwd, block.Text, exitOnError: true);
                return exit == 0 ? [] : [$"{block.Where}: the script exited {exit}:\n{output}"];
            }
            case "csharp":
            {
                var (assembly, errors) = CSharpSnippet.Compile(block.Text, block.Where);
                if (assembly is null) return [$"{block.Where}: the example does not compile:\n{string.Join('\n', errors)}"];
                var (exit, output) = CSharpSnippet.Run(assembly, cwd);
                return exit == 0 ? [] : [$"{block.Where}: the example exited {exit}:\n{output}"];
            }
            default:
                return [$"{block.Where}: a '{block.Language}' block cannot run"];
        }
    }

    /// <summary>Blocks grouped into sessions: each runnable block, then the <c>continued</c> blocks after it.</summary>
    internal static IReadOnlyList<IReadOnlyList<DocBlock>> SessionsOf(IReadOnlyList<DocBlock> blocks)
    {
        var sessions = new List<List<DocBlock>>();
        DocBlock? previous = null;
        foreach (var block in blocks)
        {
            bool runs = block.Language != "text" && block.NotRunReason is null;
            if (runs && block.Continues && previous is not null && previous.File == block.File && sessions.Count > 0)
                sessions[^1].Add(block);
            else if (runs)
                sessions.Add([block]);
            previous = block;
        }
        return sessions;
    }

    /// <summary>What is wrong with the blocks' languages and markers, one line each.</summary>
    internal static IReadOnlyList<string> Problems(IReadOnlyList<DocBlock> blocks)
    {
        var problems = new List<string>();
        DocBlock? previous = null;
        foreach (var block in blocks)
        {
            foreach (string p in block.Problems) problems.Add($"{block.Where}: {p}");
            if (!MarkdownBlocks.Languages.Contains(block.Language))
                problems.Add($"{block.Where}: a block needs a language the docs tests know ({string.Join(", ", MarkdownBlocks.Languages)}), "
                    + $"not '{block.Language}'; mark examples that must not run with <!-- not run: REASON -->");
            if (block.Language == "text" && (block.NotRunReason is not null || block.Setup.Count > 0 || block.Continues || block.Varies.Count > 0))
                problems.Add($"{block.Where}: a text block is never run, so it takes no marker");
            if (block.Varies.Count > 0 && block.Language != "console")
                problems.Add($"{block.Where}: 'varies:' applies to console transcripts only");
            if (block.NotRunReason is not null && (block.Setup.Count > 0 || block.Continues || block.Varies.Count > 0))
                problems.Add($"{block.Where}: a block that is not run takes no other marker");
            if (block.Continues && (previous is null || previous.File != block.File || previous.NotRunReason is not null || previous.Language == "text"))
                problems.Add($"{block.Where}: 'continued' needs a block that runs before it in the same file");
            if (block.Language == "console" && block.NotRunReason is null)
            {
                try
                {
                    if (ConsoleTranscript.Steps(block).Count == 0) problems.Add($"{block.Where}: a console block without a command");
                }
                catch (InvalidDataException e)
                {
                    problems.Add(e.Message);
                }
            }
            previous = block;
        }
        return problems;
    }
}
