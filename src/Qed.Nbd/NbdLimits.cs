namespace Qed.Nbd;

/// <summary>Fixed protocol limits (the NBD project's doc/proto.md and what the real clients accept).</summary>
internal static class NbdLimits
{
    /// <summary>Names and queries MUST be at most 4096 bytes.</summary>
    public const int MaxString = 4096;

    /// <summary>Total option data accepted; above it the connection is dropped, as qemu-nbd and nbdkit do.</summary>
    public const int MaxOptionLength = 64 * 1024;

    /// <summary>Meta-context queries accepted in one option (more get ERR_TOO_BIG).</summary>
    public const int MaxMetaQueries = 128;

    /// <summary>The largest READ/WRITE payload; QEMU's NBD_MAX_BUFFER_SIZE, advertised as the maximum block size.</summary>
    public const int MaxPayload = 32 * 1024 * 1024;

    /// <summary>
    /// A WRITE longer than the maximum but at most this long is drained and answered with EINVAL; a longer one
    /// cannot be afforded and ends the connection (the spec allows a hard disconnect for such payloads).
    /// </summary>
    public const long MaxDrainedPayload = 64L * 1024 * 1024;

    /// <summary>Block-status extents per chunk without REQ_ONE (the spec allows 2^20; clients re-query the rest).</summary>
    public const int MaxExtents = 64 * 1024;

    /// <summary>Block-status lengths are aligned to this (the spec's 512, the tail of an unaligned image excepted).</summary>
    public const int StatusAlignment = 512;

    /// <summary>The preferred block size advertised in NBD_INFO_BLOCK_SIZE.</summary>
    public const int PreferredBlock = 4096;

    /// <summary>
    /// The listen backlog, as qemu-nbd and nbdkit ask (the kernel caps it at net.core.somaxconn). A short one drops
    /// the SYNs of a burst of clients, which then wait 1 s, 3 s, 7 s... before retrying.
    /// </summary>
    public const int ListenBacklog = 4096;

    /// <summary>
    /// Replies are sent in pieces of at most this size, so a stalled client is recognised by a piece that does not go
    /// out within the stall limit, however large the reply.
    /// </summary>
    public const int SendPiece = 1024 * 1024;
}
