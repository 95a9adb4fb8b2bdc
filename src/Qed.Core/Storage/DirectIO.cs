using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// A second handle that bypasses the host cache, for cache=none and directsync: O_DIRECT on Linux and
/// FILE_FLAG_NO_BUFFERING on Windows (both want requests and memory aligned to <see cref="Alignment"/>; the aligned
/// bounce buffers here serve callers whose memory is not), F_NOCACHE on macOS (any request, any memory). Where none
/// is had (the filesystem refuses, or QED_PORTABLE_IO), the storage uses its buffered handle alone.
/// </summary>
internal static unsafe partial class DirectIO
{
    /// <summary>Offset, length and memory alignment used for direct I/O: safe for every Linux device and Windows sector size up to 4 KiB.</summary>
    public const int Alignment = 4096;
    /// <summary>Largest bounce buffer; bigger requests go in pieces.</summary>
    public const int BounceSize = 1 << 20;

    private const int O_RDONLY = 0, O_RDWR = 2, O_DSYNC = 0x1000, O_DIRECT = 0x4000, O_CLOEXEC = 0x80000;

    [LibraryImport(LinuxFile.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    private static readonly ConcurrentBag<nint> Pool = new();

    /// <summary>FILE_FLAG_NO_BUFFERING, which .NET passes through to CreateFile on Windows.</summary>
    private const FileOptions NoBuffering = (FileOptions)0x20000000;

    /// <summary>
    /// Opens <paramref name="path"/> bypassing the host cache (and write-through when <paramref name="dsync"/>); null
    /// where that is refused. <paramref name="alignment"/> is what requests on it need: <see cref="Alignment"/>, or 1.
    /// A refused handle is closed through <see cref="PosixLocks.Close"/> (closing may not drop the first handle's locks).
    /// </summary>
    public static SafeFileHandle? TryOpen(string path, bool writable, bool dsync, NativeLock.FileId? id, out int alignment)
    {
        alignment = Alignment;
        if (HostIO.Linux) return TryOpenLinux(path, writable, dsync);
        if (HostIO.Windows) return Probe(TryOpenHandle(path, writable, NoBuffering | (dsync ? FileOptions.WriteThrough : 0)), id);
        if (!HostIO.MacOS) return null;
        alignment = 1;
        var handle = TryOpenHandle(path, writable, dsync ? FileOptions.WriteThrough : 0);
        if (handle is null || MacFile.TryDisableCache(handle)) return handle;
        PosixLocks.Close(id, handle);
        return null;
    }

    private static SafeFileHandle? TryOpenHandle(string path, bool writable, FileOptions options)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite | FileShare.Delete,
                FileOptions.Asynchronous | options);
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        catch (ArgumentException) { return null; } // a runtime that does not pass FILE_FLAG_NO_BUFFERING through
    }

    private static SafeFileHandle? TryOpenLinux(string path, bool writable, bool dsync)
    {
        if (!(RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64)) return null;
        int fd;
        try
        {
            fd = Open(path, (writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC | (dsync ? O_DSYNC : 0), 0);
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        if (fd < 0) return null;
        return Probe(new SafeFileHandle(fd, ownsHandle: true), id: null);
    }

    /// <summary>
    /// The handle if an aligned read works on it (tmpfs and some FUSE filesystems accept O_DIRECT at open and refuse
    /// the first aligned read; a Windows volume whose sectors exceed 4 KiB would too), else null, the handle closed.
    /// </summary>
    private static SafeFileHandle? Probe(SafeFileHandle? handle, NativeLock.FileId? id)
    {
        if (handle is null) return null;
        nint probe = Rent();
        try
        {
            RandomAccess.Read(handle, new Span<byte>((void*)probe, Alignment), 0);
            return handle;
        }
        catch (IOException)
        {
            PosixLocks.Close(id, handle);
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
