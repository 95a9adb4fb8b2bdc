namespace Qed.Tests.Hostile;

/// <summary>
/// What the operations on one mutated image did, and the rule both mutation suites hold them to: an
/// <see cref="ImageFormatException"/> anywhere, an <see cref="ImageNeedsCheckException"/> from a write only, and
/// (where a suite allows it) a <see cref="NotSupportedException"/> from the open only; anything else is unexpected.
/// </summary>
internal sealed class MutantOutcome(string id)
{
    /// <summary>Names the image in every unexpected line (its seed, and its sample where a suite has several).</summary>
    public string Id { get; set; } = id;

    public bool Opened, Measured;
    public int FormatErrors, RefusedWrites, Unsupported;
    public List<string> Unexpected { get; } = new();

    /// <summary>Runs <paramref name="action"/> and records how it ended.</summary>
    public async Task TryAsync(string what, Func<Task> action, bool isWrite = false, bool unsupportedAllowed = false)
    {
        try
        {
            await action();
        }
        catch (ImageNeedsCheckException) when (isWrite)
        {
            RefusedWrites++;
        }
        catch (ImageFormatException e) when (e is not ImageNeedsCheckException) // a refusal is expected from writes only
        {
            FormatErrors++;
        }
        catch (NotSupportedException) when (unsupportedAllowed)
        {
            Unsupported++;
        }
        catch (Exception e)
        {
            Unexpected.Add($"{Id}: {what}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        }
    }
}
