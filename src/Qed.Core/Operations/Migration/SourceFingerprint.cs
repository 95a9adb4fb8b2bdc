using System.Globalization;
using System.Security.Cryptography;
using Qed.Storage;

namespace Qed.Operations.Migration;

/// <summary>
/// What a re-run compares to tell that a source is unchanged since it was migrated: its size, its modification time
/// and a SHA-256 of its bytes.
/// </summary>
/// <param name="Size">The file's length in bytes.</param>
/// <param name="ModifiedUtc">The file's modification time, UTC, in round-trip ("o") form.</param>
/// <param name="Sha256">The SHA-256 of the file, lower-case hex; null when not computed.</param>
public sealed record SourceFingerprint(long Size, string ModifiedUtc, string? Sha256)
{
    /// <summary>Size and modification time only (cheap: no read).</summary>
    internal static SourceFingerprint Stat(string path)
    {
        var info = new FileInfo(path);
        return new SourceFingerprint(info.Length, info.LastWriteTimeUtc.ToString("o", CultureInfo.InvariantCulture), null);
    }

    /// <summary>
    /// Size, modification time and checksum (reads the whole file). The file is read through a lock-free
    /// <see cref="FileStorage"/>, not a FileStream: where image locks are POSIX record locks (macOS, QED_PORTABLE_IO),
    /// closing any other descriptor of the file would drop the locks the migration's open of the source holds, and
    /// FileStorage's close knows to keep them.
    /// </summary>
    internal static async Task<SourceFingerprint> ComputeAsync(string path, CancellationToken ct)
    {
        var stat = Stat(path);
        using var file = FileStorage.Open(path, writable: false, locking: FileLockMode.None);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        for (long at = 0, length = file.Length; at < length;)
        {
            int n = (int)Math.Min(buffer.Length, length - at);
            await file.ReadAsync(at, buffer.AsMemory(0, n), ct).ConfigureAwait(false);
            sha.AppendData(buffer, 0, n);
            at += n;
        }
        return stat with { Sha256 = Convert.ToHexStringLower(sha.GetHashAndReset()) };
    }

    /// <summary>Whether size and modification time match (the checksum is not looked at).</summary>
    public bool SameStat(SourceFingerprint? other) => other != null && other.Size == Size && other.ModifiedUtc == ModifiedUtc;
}
