namespace Qed.Storage;

/// <summary>A shared read-only block of zeroes, for writing zero runs without allocating.</summary>
internal static class Zeroes
{
    /// <summary>1 MiB of zeroes. Never written to.</summary>
    public static readonly ReadOnlyMemory<byte> Block = new byte[1 << 20];

    /// <summary>Writes zeroes over a range in chunks of <see cref="Block"/>.</summary>
    public static async ValueTask WriteAsync(IBlockStorage storage, long offset, long length, CancellationToken ct)
    {
        while (length > 0)
        {
            int n = (int)Math.Min(length, Block.Length);
            await storage.WriteAsync(offset, Block[..n], ct).ConfigureAwait(false);
            offset += n;
            length -= n;
        }
    }
}
