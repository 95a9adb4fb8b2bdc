using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// O_DIRECT on Linux: opening with the flag, probing that the filesystem accepts it, and aligned bounce buffers
/// for callers whose memory is not aligned. Requests must be aligned in offset and length to <see cref="Alignment"/>.
/// </summary>
internal static unsafe partial class DirectIO
{
    /// <summary>Offset, length and memory alignment used for direct I/O: safe for every Linux device.</summary>
    public const int Alignment = 4096;
    /// <summary>Largest bounce buffer; bigger requests go in pieces.</summary>
    public const int BounceSize = 1 << 20;

    private const int O_RDONLY = 0, O_RDWR = 2, O_DSYNC = 0x1000, O_DIRECT = 0x4000, O_CLOEXEC = 0x80000;

    [LibraryImport(NativeFile.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    private static readonly ConcurrentBag<nint> Pool = new();

    /// <summary>Opens <paramref name="path"/> with O_DIRECT (and O_DSYNC when asked); null where that is refused.</summary>
    public static SafeFileHandle? TryOpen(string path, bool writable, bool dsync)
    {
        if (!OperatingSystem.IsLinux() || !(RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64))
            return null;
        int fd;
        try
        {
            fd = Open(path, (writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC | (dsync ? O_DSYNC : 0), 0);
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        if (fd < 0) return null;
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        // tmpfs and some FUSE filesystems accept the flag at open and refuse the first aligned read.
        nint probe = Rent();
        try
        {
            RandomAccess.Read(handle, new Span<byte>((void*)probe, Alignment), 0);
            return handle;
        }
        catch (IOException)
        {
            handle.Dispose();
            return null;
        }
        finally
        {
            Return(probe);
        }
    }

    /// <summary>Whether a request can go straight to the direct handle.</summary>
    public static bool IsAligned(long offset, int length) => ((offset | (long)length) & (Alignment - 1)) == 0;

    /// <summary>An aligned native buffer of <see cref="BounceSize"/> bytes.</summary>
    public static nint Rent() => Pool.TryTake(out var buffer) ? buffer : (nint)NativeMemory.AlignedAlloc(BounceSize, Alignment);

    /// <summary>Returns a buffer from <see cref="Rent"/>.</summary>
    public static void Return(nint buffer) => Pool.Add(buffer);

    /// <summary>Whether memory starts on an aligned address (so it needs no bounce buffer).</summary>
    public static bool IsAligned(ReadOnlyMemory<byte> memory)
    {
        using var pin = memory.Pin();
        return ((nint)pin.Pointer & (Alignment - 1)) == 0;
    }

    /// <summary>A <see cref="System.Buffers.MemoryManager{T}"/> over a native bounce buffer, so RandomAccess can use it.</summary>
    public sealed class NativeBuffer(nint pointer, int length) : System.Buffers.MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new((void*)pointer, length);
        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new((byte*)pointer + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
