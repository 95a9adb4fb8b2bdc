namespace Qed.Storage;

/// <summary>Host cache modes, as qemu's <c>-t</c>. What each guarantees after a crash is in the README.</summary>
public enum CacheMode
{
    /// <summary>The host page cache holds writes until a flush makes them durable (qemu's default).</summary>
    WriteBack,
    /// <summary>Every write is durable when it completes (O_DSYNC; on macOS each write is followed by F_FULLFSYNC); flushes cost nothing more.</summary>
    WriteThrough,
    /// <summary>
    /// Bypass the host page cache (O_DIRECT on Linux, FILE_FLAG_NO_BUFFERING on Windows, F_NOCACHE on macOS) where the
    /// filesystem allows it, else write-back; flushes still sync.
    /// </summary>
    None,
    /// <summary>O_DIRECT and O_DSYNC together: every write durable, no host cache.</summary>
    DirectSync,
    /// <summary>Flushes are ignored: fastest, and a host crash can lose or corrupt anything. For scratch images only.</summary>
    Unsafe,
}

/// <summary>Parsing of qemu's cache mode names (the qed tool's <c>-t</c>; not public API).</summary>
internal static class CacheModes
{
    /// <summary>Parses writeback, writethrough, none, directsync or unsafe (qemu's names).</summary>
    public static CacheMode Parse(string name) => name switch
    {
        "writeback" => CacheMode.WriteBack,
        "writethrough" => CacheMode.WriteThrough,
        "none" or "off" => CacheMode.None,
        "directsync" => CacheMode.DirectSync,
        "unsafe" => CacheMode.Unsafe,
        _ => throw new ArgumentException($"Invalid cache option: {name} (expected none, writeback, writethrough, directsync or unsafe)"),
    };
}
