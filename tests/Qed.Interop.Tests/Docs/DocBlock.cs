namespace Qed.Interop.Tests.Docs;

/// <summary>
/// One fenced code block of a markdown file, with the marker comments written on the lines just before its opening
/// fence (see <see cref="MarkdownBlocks"/> for the markers).
/// </summary>
/// <param name="File">The markdown file's path relative to the repository root, e.g. <c>docs/cli-tour.md</c>.</param>
/// <param name="Line">The 1-based line of the opening fence.</param>
/// <param name="Language">The fence's info string (<c>console</c>, <c>sh</c>, <c>csharp</c>, <c>text</c>), or "" when none.</param>
/// <param name="Body">The lines between the fences.</param>
/// <param name="Setup">Shell commands from <c>&lt;!-- setup: CMD --&gt;</c>, run in order before the block.</param>
/// <param name="NotRunReason">The reason from <c>&lt;!-- not run: REASON --&gt;</c>, or null when the block runs.</param>
/// <param name="Varies">Patterns from <c>&lt;!-- varies: PATTERN --&gt;</c> for output lines that change from run to run.</param>
/// <param name="Continues">True for <c>&lt;!-- continued --&gt;</c>: the block runs in the folder the previous block left.</param>
/// <param name="Problems">Markers this parser could not accept (unknown marker, empty reason, ...).</param>
public sealed record DocBlock(
    string File,
    int Line,
    string Language,
    IReadOnlyList<string> Body,
    IReadOnlyList<string> Setup,
    string? NotRunReason,
    IReadOnlyList<string> Varies,
    bool Continues,
    IReadOnlyList<string> Problems)
{
    /// <summary>Where the block is, for messages: <c>docs/cli-tour.md:18</c>.</summary>
    public string Where => $"{File}:{Line}";

    /// <summary>The whole body as one text, lines joined by '\n'.</summary>
    public string Text => string.Join('\n', Body);
}
