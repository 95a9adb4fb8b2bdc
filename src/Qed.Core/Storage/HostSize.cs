namespace Qed.Storage;

/// <summary>The bytes a storage occupies on the host (qemu-img's disk size), for the storages that can tell.</summary>
internal static class HostSize
{
    /// <summary>The storage's <see cref="IBlockStorage.AllocatedBytes"/>: call that instead (this is kept for callers not yet moved to it).</summary>
    public static long? Of(IBlockStorage storage) => storage.AllocatedBytes;
}
