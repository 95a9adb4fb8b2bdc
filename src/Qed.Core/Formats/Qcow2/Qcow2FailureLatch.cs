using System.Buffers.Binary;
using Qed.Storage;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The first failure that makes a writable qcow2 image refuse further writes this session: a corruption met by the
/// overlap checks (<see cref="ImageFormatException"/>), or a metadata write-back that failed part way (memory and disk
/// may disagree). Writes are then refused with <see cref="ImageNeedsCheckException"/> (corruption) or
/// <see cref="IOException"/> (failed write-back), flushes with <see cref="ImageFormatException"/> (corruption); the
/// same types QED uses, so every front maps them alike (NBD: EIO).
/// </summary>
/// <remarks>
/// Invariants: the failure is set at most once and never cleared (the first one is the one reported); marking the
/// image corrupt writes the version 3 corrupt bit once, with a flush, before the failing request returns. Lock-free:
/// one compare-exchange.
/// </remarks>
internal sealed class Qcow2FailureLatch(IBlockStorage file, string name, bool v3, Qcow2IncompatibleFeatures features)
{
    private Exception? _failure;

    /// <summary>The first failure, or null.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    /// <summary>Records <paramref name="error"/> unless a failure was recorded before; returns whether this one was first.</summary>
    public bool Record(Exception error) => Interlocked.CompareExchange(ref _failure, error, null) == null;

    /// <summary>Refuses a write after a failure: <see cref="ImageNeedsCheckException"/> after a corruption, else an <see cref="IOException"/>.</summary>
    public void ThrowIfFailed()
    {
        switch (Failure)
        {
            case ImageFormatException corrupt:
                throw new ImageNeedsCheckException($"Writes to '{name}' are refused until it is checked: {corrupt.Message}", name, corrupt);
            case { } e:
                throw new IOException($"The qcow2 image '{name}' refuses writes after an earlier metadata write failed: {e.Message}", e);
        }
    }

    /// <summary>Refuses a flush after a corruption (its tables are no longer written), else as <see cref="ThrowIfFailed"/>.</summary>
    public void ThrowIfFailedForFlush()
    {
        if (Failure is ImageFormatException corrupt)
            throw new ImageFormatException($"'{name}' cannot be flushed, its tables are no longer written: {corrupt.Message}", name, corrupt.Field, corrupt.FileOffset, corrupt);
        ThrowIfFailed();
    }

    /// <summary>Records a corruption and, if it is the first failure and the image is version 3, sets the corrupt bit
    /// in the header (as QEMU does). Returns <paramref name="error"/> for the caller to throw.</summary>
    public async ValueTask<ImageFormatException> CorruptAsync(ImageFormatException error)
    {
        error.AttachFileName(name);
        if (Record(error) && v3)
        {
            var bits = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(bits, (ulong)(features | Qcow2IncompatibleFeatures.Corrupt));
            try
            {
                await file.WriteAsync(Qcow2Header.IncompatibleOffset, bits, CancellationToken.None).ConfigureAwait(false);
                await file.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The request fails with the corruption either way, and this session refuses every later write; a file
                // that cannot take the bit is left as it was.
            }
        }
        return error;
    }
}
