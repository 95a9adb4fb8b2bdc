using System.Globalization;
using System.Security.Cryptography;

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

    /// <summary>Size, modification time and checksum (reads the whole file).</summary>
    internal static async Task<SourceFingerprint> ComputeAsync(string path, CancellationToken ct)
    {
        var stat = Stat(path);
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 20, FileOptions.SequentialScan);
        byte[] hash = await SHA256.HashDataAsync(stream, ct).ConfigureAwait(false);
        return stat with { Sha256 = Convert.ToHexStringLower(hash) };
    }

    /// <summary>Whether size and modification time match (the checksum is not looked at).</summary>
    public bool SameStat(SourceFingerprint? other) => other != null && other.Size == Size && other.ModifiedUtc == ModifiedUtc;
}
