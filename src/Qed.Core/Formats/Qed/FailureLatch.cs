namespace Qed.Formats.Qed;

/// <summary>
/// The image's failure latch: the first corruption met at run time, or the first metadata write that failed. Once
/// set, memory and disk may disagree, so every later write is refused until the image is checked.
/// </summary>
/// <remarks>
/// Invariants: set at most once (the first failure is the one reported), never cleared while the image is open;
/// read without a lock (volatile), so the request paths pay one volatile read for it.
/// </remarks>
internal sealed class FailureLatch(string imageName)
{
    private volatile Exception? _failure;

    /// <summary>The first failure, or null.</summary>
    public Exception? Failure => _failure;

    /// <summary>Records <paramref name="error"/> unless a failure is recorded already.</summary>
    public void Record(Exception error) => Interlocked.CompareExchange(ref _failure, error, null);

    /// <summary>Records a corruption and returns the exception the request fails with.</summary>
    public ImageFormatException Corrupt(string message, string field, long fileOffset)
    {
        var error = new ImageFormatException($"{message}; the image '{imageName}' {RepairAdvice.NeedsRepair}", imageName, field, fileOffset);
        Record(error);
        return error;
    }

    /// <summary>Throws <see cref="ImageNeedsCheckException"/> once a failure is recorded.</summary>
    public void ThrowIfFailed()
    {
        var failure = _failure;
        if (failure != null)
            throw new ImageNeedsCheckException($"Writes to '{imageName}' are refused until it is checked: {failure.Message}", imageName, failure);
    }
}
