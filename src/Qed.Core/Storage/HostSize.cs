namespace Qed.Storage;

/// <summary>The bytes a storage occupies on the host (qemu-img's disk size), for the storages that can tell.</summary>
internal static class HostSize
{
    /// <summary>A file's allocated bytes; a quorum's is the sum of its children's, as qemu-img shows; else null.</summary>
    public static long? Of(IBlockStorage storage) => storage switch
    {
        FileStorage file => file.AllocatedBytes,
        QuorumStorage quorum => quorum.AllocatedBytes,
        _ => null,
    };
}
