using Qed.Interop.Tests.Support;
using Qed.Formats.Qed;

namespace Qed.Interop.Tests.Docs;

/// <summary>
/// The docs harness itself can fail: a wrong transcript, an unmarked or unlabelled block, a pattern that does not
/// cover the line, or a C# example that does not compile or throws is reported, naming the file and line.
/// </summary>
public class DocHarnessTests
{
    private static IReadOnlyList<DocBlock> Parse(string markdown) => MarkdownBlocks.Parse("t.md", markdown.Split('\n'));

    private static IReadOnlyList<string> RunAll(string markdown)
    {
        using var shell = new Shell();
        var failures = new List<string>();
        foreach (var session in DocExamplesTests.SessionsOf(Parse(markdown)))
        {
            using var dir = new TempDir(); // a fresh folder per session, as DocExamplesTests runs them
            foreach (var block in session)
                failures.AddRange(DocExamplesTests.RunBlock(block, shell, dir.Path));
        }
        return failures;
    }

    [Fact]
    public void ExactTranscriptPasses()
    {
        Assert.Empty(RunAll("```console\n$ echo hello\nhello\n$ false\n$ echo $?\n1\n```"));
    }

    [Fact]
    public void WrongOutputFailsNamingTheLine()
    {
        var failures = RunAll("# t\n```console\n$ echo one\none\n$ echo two\nthree\n```");
        string failure = Assert.Single(failures);
        Assert.StartsWith("t.md:5: $ echo two", failure);
        Assert.Contains("three", failure);
    }

    [Fact]
    public void MissingAndExtraLinesFail()
    {
        Assert.Single(RunAll("```console\n$ printf 'a\\nb\\n'\na\n```"));
        Assert.Single(RunAll("```console\n$ echo a\na\nb\n```"));
    }

    [Fact]
    public void QedUnderTestIsOnPath()
    {
        Assert.Empty(RunAll("```console\n$ qed create -q -f raw a.raw 1M\n$ stat -c %s a.raw\n1048576\n```"));
    }

    [Fact]
    public void VariesCoversOnlyLinesOfItsPattern()
    {
        Assert.Empty(RunAll("<!-- varies: took * s -->\n```console\n$ echo took $RANDOM s\ntook 0.5 s\n```"));
        Assert.Single(RunAll("<!-- varies: took * s -->\n```console\n$ echo took 3 ms\ntook 0.5 s\n```"));
        Assert.Single(RunAll("<!-- varies: took * s -->\n```console\n$ echo spent 3 s\ntook 0.5 s\n```"));
        // A pattern keeps its leading spaces, as indented JSON lines need.
        Assert.Empty(RunAll("<!-- varies:   \"n\": *, -->\n```console\n$ echo '  \"n\": 7,'\n  \"n\": 5,\n```"));
        Assert.Single(RunAll("<!-- varies:   \"n\": *, -->\n```console\n$ echo '\"n\": 7,'\n  \"n\": 5,\n```"));
    }

    [Fact]
    public void SetupRunsFirstAndContinuedBlocksShareTheFolder()
    {
        Assert.Empty(RunAll("<!-- setup: echo x > f -->\n```console\n$ cat f\nx\n```\ntext\n<!-- continued -->\n```sh\ntest -f f\n```"));
        // Without the marker, a block starts in a fresh folder.
        Assert.Single(RunAll("<!-- setup: echo x > f -->\n```console\n$ cat f\nx\n```\n```sh\ntest -f f\n```"));
    }

    [Fact]
    public void FailingShellScriptFails()
    {
        Assert.Single(RunAll("```sh\nfalse\ntrue\n```"));
    }

    [Fact]
    public void UnlabelledUnknownAndBadlyMarkedBlocksAreProblems()
    {
        Assert.Single(DocExamplesTests.Problems(Parse("```\nqed serve disk.qed\n```")));
        Assert.Single(DocExamplesTests.Problems(Parse("```bash\nls\n```")));
        Assert.Single(DocExamplesTests.Problems(Parse("<!-- not run: -->\n```sh\nls\n```")));
        Assert.Single(DocExamplesTests.Problems(Parse("<!-- skip -->\n```sh\nls\n```")));
        Assert.Single(DocExamplesTests.Problems(Parse("```console\nqed info x\n```")));
        Assert.Empty(DocExamplesTests.Problems(Parse("<!-- not run: installs packages -->\n```sh\napt-get install x\n```\n```text\ntree\n```")));
    }

    [Fact]
    public void CSharpThatDoesNotCompileOrThrowsFails()
    {
        string failure = Assert.Single(RunAll("```csharp\nusing Qed;\nawait DiskImage.OpenAsync(path);\n```"));
        Assert.Contains("does not compile", failure);
        Assert.Contains("CS0103", failure); // 'path' does not exist in the current context
        failure = Assert.Single(RunAll("```csharp\nusing Qed;\nawait using var d = await DiskImage.OpenAsync(\"missing.qed\");\n```"));
        Assert.Contains("exited", failure);
        Assert.Empty(RunAll("```csharp\nusing Qed;\nusing Qed.Formats.Qed;\nawait (await DiskImage.CreateAsync(\"a.qed\", ImageFormat.Qed, new QedCreateOptions { Size = 1 << 20 })).DisposeAsync();\n"
            + "await using var d = await DiskImage.OpenAsync(\"a.qed\");\nif (d.Size != 1 << 20) return 1;\nreturn 0;\n```"));
    }
}
