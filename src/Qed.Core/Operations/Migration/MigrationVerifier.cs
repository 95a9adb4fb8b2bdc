using System.Buffers;
using Qed.Check;

namespace Qed.Operations.Migration;

/// <summary>
/// Verifies a converted target before it counts: its own consistency check is clean (qcow2; raw has none) and its
/// guest content, through its backing chain, equals the source's through the source's chain.
/// </summary>
internal static class MigrationVerifier
{
    /// <summary>The outcome: null <see cref="Problem"/> when verified; <see cref="Check"/> says what the check said.</summary>
    public readonly record struct Verdict(string? Problem, string? Check);

    /// <summary>
    /// Verifies the target file at <paramref name="targetPath"/> against the open <paramref name="source"/>. When
    /// <paramref name="salvaging"/>, the source is compared as salvage read it: sectors that cannot be read count as
    /// zeroes.
    /// </summary>
    public static async Task<Verdict> VerifyAsync(DiskImage source, string targetPath, string targetFormat, bool salvaging, CancellationToken ct)
    {
        string check;
        if (targetFormat == "raw") check = "none (raw has no consistency check)";
        else
        {
            var result = await QedChecker.CheckFileAsync(targetPath, targetFormat, CheckRepair.None, null, ct).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"No consistency check for '{targetFormat}'");
            if (result.Corruptions != 0 || result.CheckErrors != 0 || result.Leaks != 0)
                return new Verdict($"the target's check found {MigrationText.Count(result.Corruptions, "corruption")}, {MigrationText.Count(result.Leaks, "leaked cluster")} and {MigrationText.Count(result.CheckErrors, "check error")}",
                    "failed");
            else check = "clean";
        }

        await using var target = await DiskImage.OpenAsync(targetPath,
            new ImageOpenOptions { Format = ImageFormatNames.FromName(targetFormat), ReadOnly = true }, ct).ConfigureAwait(false);
        if (target.Size != source.Size)
            return new Verdict($"the target's size ({target.Size}) differs from the source's ({source.Size})", check);
        if (!salvaging)
        {
            var compared = await CompareOperation.CompareAsync(source, target, strict: false, ct).ConfigureAwait(false);
            return compared.Identical ? new Verdict(null, check)
                : new Verdict($"the target's content differs from the source's at offset {compared.MismatchOffset}", check);
        }
        long? mismatch = await CompareSalvagedAsync(source, target, ct).ConfigureAwait(false);
        return mismatch is null ? new Verdict(null, check)
            : new Verdict($"the target's content differs from what could be read of the source at offset {mismatch}", check);
    }

    /// <summary>
    /// Compares every byte, reading the source as salvage does (a chunk that fails is read again sector by sector,
    /// failed sectors as zeroes); returns the first differing offset or null. Only for salvaged sources, whose
    /// allocation map may itself be unreadable, so nothing is skipped.
    /// </summary>
    private static async Task<long?> CompareSalvagedAsync(DiskImage source, DiskImage target, CancellationToken ct)
    {
        const int Chunk = 1 << 20, Sector = 512;
        byte[] a = ArrayPool<byte>.Shared.Rent(Chunk), b = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            for (long offset = 0; offset < source.Size; offset += Chunk)
            {
                int len = (int)Math.Min(Chunk, source.Size - offset);
                var ma = a.AsMemory(0, len);
                var mb = b.AsMemory(0, len);
                await target.ReadAsync(offset, mb, ct).ConfigureAwait(false);
                try
                {
                    await source.ReadAsync(offset, ma, ct).ConfigureAwait(false);
                }
                catch (IOException)
                {
                    for (int at = 0; at < len; at += Sector)
                    {
                        var part = ma.Slice(at, Math.Min(Sector, len - at));
                        try { await source.ReadAsync(offset + at, part, ct).ConfigureAwait(false); }
                        catch (IOException) { part.Span.Clear(); }
                    }
                }
                int common = ma.Span.CommonPrefixLength(mb.Span);
                if (common < len) return offset + common;
            }
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(a);
            ArrayPool<byte>.Shared.Return(b);
        }
    }
}
