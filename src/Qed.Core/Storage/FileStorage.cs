using System.Runtime.CompilerServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// A file used through <see cref="RandomAccess"/> on a <see cref="SafeFileHandle"/>: positional and thread-safe.
/// On Linux these are blocking calls on the thread pool (regular files have no async I/O), so callers bound how
/// many requests they keep in flight.
/// </summary>
/// <remarks>
/// Each host's best calls are used where it has them (hole punching, reserving, the allocation map, cache bypass,
/// ranged durable writes, image locks), and where it has not, a fallback that keeps the same guarantee: discards
/// write zeroes, growth sets the length, durability is never weaker than the cache mode promises. docs/platforms.md
/// has the table for Linux, Windows and macOS.
/// </remarks>
public sealed class FileStorage : IBlockStorage
{
    private readonly SafeFileHandle _handle;
    private readonly SafeFileHandle _control;    // control calls (Windows: a synchronous second handle; elsewhere _handle)
    private readonly NativeLock.FileId? _id;     // the file's identity, where the host tells it
    private IDisposable? _locks;                 // what lets the image locks go, where closing the handle does not

    private readonly CacheMode _cache;
    private readonly SafeFileHandle? _direct; // cache-bypassing handle under cache=none/directsync (DirectIO.cs)
    private readonly int _directAlignment;    // what a request needs to go to _direct: 4096 (O_DIRECT, NO_BUFFERING) or 1 (F_NOCACHE)
    private readonly WriteLane? _lane;        // buffered writes that do not sync go one at a time (WriteLane.cs)
    private readonly bool _syncEachWrite;     // macOS write-through: O_SYNC stops at the drive's cache, so F_FULLFSYNC follows
    private readonly bool _sparse;            // Windows: marked sparse, so growth and discards leave holes

    private FileStorage(SafeFileHandle handle, string path, bool canWrite, NativeLock.FileId? id, IDisposable? locks,
        CacheMode cache = CacheMode.WriteBack, SafeFileHandle? direct = null, int directAlignment = DirectIO.Alignment)
    {
        _handle = handle;
        Name = path;
        CanWrite = canWrite;
        _id = id;
        _locks = locks;
        _cache = cache;
        _direct = direct;
        _directAlignment = directAlignment;
        if (canWrite && cache is not (CacheMode.WriteThrough or CacheMode.DirectSync)) _lane = new WriteLane(handle);
        _syncEachWrite = HostIO.MacOS && canWrite && WritesAreDurable;
        _control = handle;
        if (HostIO.Windows)
        {
            _control = WindowsFile.ReOpen(handle, canWrite, path);
            // Sparse before any growth, so the grown range is a hole and discards free space; refused on FAT and by
            // block devices, which then grow by allocating and discard by writing zeroes.
            _sparse = canWrite && WindowsFile.TryMarkSparse(_control);
        }
    }

    /// <summary>What this file does natively on this host, and what it falls back for (docs/platforms.md).</summary>
    internal FileCapabilities Capabilities => new(
        PunchHoles: NativeFile.CanPunchHoles,
        Reserve: NativeFile.CanReserve,
        Sparse: !HostIO.Windows || _sparse,
        AllocationMap: NativeFile.CanMapAllocation,
        BypassCache: _direct != null,
        RangedDurableWrites: NativeFile.CanWriteRangeDurably,
        CachedReads: NativeFile.CanReadCached,
        Locks: HostIO.Windows ? LockKind.WindowsByteRange : HostIO.PosixLocks ? LockKind.PosixRecord : HostIO.Linux ? LockKind.Ofd : LockKind.None);

    /// <summary>
    /// Opens an existing file with a host cache mode (qemu's <c>-t</c>), taking QEMU's image locks as
    /// <paramref name="locking"/> says (see <see cref="FileLockMode"/>); they are released on dispose.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageLockedException">Another opener's locks conflict with this open.</exception>
    /// <exception cref="IOException">The path is not a regular file or block device (a FIFO, directory, socket, character device).</exception>
    /// <exception cref="ArgumentException"><see cref="FileLockMode.ForceShare"/> with a writable open.</exception>
    public static FileStorage Open(string path, FileAccess access, CacheMode cache = CacheMode.WriteBack, FileLockMode locking = FileLockMode.Default) =>
        access switch
        {
            FileAccess.Read => Open(path, writable: false, cache, locking),
            FileAccess.ReadWrite => Open(path, writable: true, cache, locking),
            _ => throw new ArgumentOutOfRangeException(nameof(access), access, "An image file is opened for reading, or for reading and writing"),
        };

    /// <summary>As <see cref="Open(string, FileAccess, CacheMode, FileLockMode)"/>, with the access as a flag.</summary>
    internal static FileStorage Open(string path, bool writable, CacheMode cache = CacheMode.WriteBack, FileLockMode locking = FileLockMode.Default)
    {
        var permissions = ImageLock.For(locking, writable);
        FileKind.EnsureOpenable(path); // before the open: opening a FIFO would block
        var options = FileOptions.Asynchronous;
        if (writable && cache is CacheMode.WriteThrough or CacheMode.DirectSync) options |= FileOptions.WriteThrough;
        var handle = File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read,
            FileShare.ReadWrite, options);
        NativeLock.FileId? id = null;
        IDisposable? locks = null;
        try
        {
            id = FileKind.EnsureOpenable(handle, path);
            if (permissions is { } p) locks = ImageLock.Acquire(handle, path, id, p);
        }
        catch
        {
            PosixLocks.Close(id, handle);
            throw;
        }
        // none/directsync: aligned requests bypass the page cache through a second handle (O_DIRECT, NO_BUFFERING;
        // on macOS F_NOCACHE, which takes any request); unaligned ones use the buffered handle (Linux and NTFS keep
        // the two coherent). Where there is no such handle (tmpfs, some FUSE, QED_PORTABLE_IO), the buffered handle
        // alone gives write-back (none) or write-through (directsync) semantics. The locks stay on the first handle,
        // which lives as long as this storage.
        int alignment = DirectIO.Alignment;
        SafeFileHandle? direct = cache is CacheMode.None or CacheMode.DirectSync
            ? DirectIO.TryOpen(path, writable, dsync: cache == CacheMode.DirectSync, id, out alignment)
            : null;
        try
        {
            return new FileStorage(handle, path, writable, id, locks, cache, direct, alignment);
        }
        catch
        {
            locks?.Dispose();
            PosixLocks.Close(id, handle, direct);
            throw;
        }
    }

    /// <summary>
    /// Whether requests bypass the host page cache (cache=none or directsync, where allowed): those aligned to 4 KiB on
    /// Linux (O_DIRECT) and Windows (FILE_FLAG_NO_BUFFERING), all of them on macOS (F_NOCACHE).
    /// </summary>
    public bool IsDirect => _direct != null;

    /// <summary>The cache mode the file was opened with.</summary>
    public CacheMode Cache => _cache;

    /// <inheritdoc />
    /// <remarks>True under cache=writethrough and directsync, whose writable handles are O_DSYNC.</remarks>
    public bool WritesAreDurable => _cache is CacheMode.WriteThrough or CacheMode.DirectSync;

    /// <summary>
    /// Opens a file to write a new image into, creating it if absent, with the locks qemu-img create takes (write and
    /// resize; resize not shared), so a file another opener uses is refused before it is touched. An existing file is
    /// not truncated here: the caller writes the new image over it. Only a regular file (or nothing, or a dangling
    /// symlink) is accepted. <see cref="CreatedFile"/> says whether this call made the file, so a caller that fails
    /// removes only what it made.
    /// </summary>
    /// <exception cref="ImageLockedException">Another opener uses the file.</exception>
    /// <exception cref="IOException">The path is a directory, device, FIFO or socket.</exception>
    public static FileStorage Create(string path, FileLockMode locking = FileLockMode.Default) => Create(path, locking, onlyNew: false);

    /// <summary>
    /// As <see cref="Create(string, FileLockMode)"/>; with <paramref name="onlyNew"/>, a name that exists (a file, a
    /// link, dangling or not) is refused with an <see cref="IOException"/> by the open itself (O_EXCL), so a file
    /// another process makes after the caller looked is never written over.
    /// </summary>
    internal static FileStorage Create(string path, FileLockMode locking, bool onlyNew)
    {
        if (locking == FileLockMode.ForceShare)
            throw new ArgumentException("force-share=on can only be used with read-only images", nameof(locking));
        (ImagePermissions, ImagePermissions)? permissions = locking == FileLockMode.None ? null : ImageLock.Creator;
        FileKind.EnsureCreatable(path);
        bool created = onlyNew || !FileKind.Exists(path);
        // O_EXCL for a new name, so that "created" is known for certain; a dangling symlink gets its target created
        // through it, and counts as not created (removing the name would remove the link, which was there before).
        var handle = File.OpenHandle(path, created ? FileMode.CreateNew : File.Exists(path) ? FileMode.Open : FileMode.OpenOrCreate,
            FileAccess.ReadWrite, FileShare.ReadWrite, FileOptions.Asynchronous);
        var id = NativeLock.Stat(handle);
        IDisposable? locks = null;
        try
        {
            if (!created && id is { Type: not NativeLock.FileId.Regular })
                throw new UnsupportedFileException(path, "Not a regular file; only regular files are created", verb: "create");
            if (permissions is { } p) locks = ImageLock.Acquire(handle, path, id, p);
            return new FileStorage(handle, path, true, id, locks) { CreatedFile = created };
        }
        catch
        {
            locks?.Dispose();
            PosixLocks.Close(id, handle);
            if (created) TryDelete(path);
            throw;
        }
    }

    /// <summary>
    /// Replaces the locks taken by <see cref="Create(string, FileLockMode)"/> with a read-write open's, on the same handle, so the image a
    /// creation returns is locked as any open image. OFD locks are simply taken on top (the creator's bytes are a subset
    /// of the writer's). Record and Windows locks are let go first and then taken again: this process's table (and
    /// LockFileEx) would otherwise count the creator's own bytes as another opener's. In that short gap another process
    /// could take a lock; the new locks' own conflict test then refuses, and the creation fails without harm.
    /// Only for a storage not yet shared with anyone.
    /// </summary>
    internal void RelockAsWriter()
    {
        if (_locks is { } old)
        {
            _locks = null;
            old.Dispose();
        }
        _locks = ImageLock.Acquire(_handle, Name, _id, ImageLock.Writer);
    }

    /// <summary>Whether <see cref="Create(string, FileLockMode)"/> made this file (it did not exist before), so that only then is it removed on failure.</summary>
    public bool CreatedFile { get; private init; }

    /// <summary>Removes a file this process created, ignoring failure (the caller is already reporting one).</summary>
    internal static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Whether two names are one file (same device and inode).</summary>
    internal static bool IsSameFile(string a, string b) => FileKind.SameFile(a, b);

    /// <summary>The underlying handle, for callers in this assembly and its tests that need a platform call of their own.</summary>
    internal SafeFileHandle Handle => _handle;

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool CanWrite { get; }

    /// <inheritdoc />
    public long Length => RandomAccess.GetLength(_handle);

    /// <summary>
    /// Bytes the file occupies on disk (st_blocks × 512), as qemu-img's actual-size; null where the host cannot tell
    /// holes from data (no SEEK_DATA/SEEK_HOLE or allocated-range query, as under QED_PORTABLE_IO), as qemu-img's
    /// "unavailable".
    /// </summary>
    public long? AllocatedBytes
    {
        get
        {
            // .NET exposes no st_blocks; the sum of data runs is the same figure for regular files.
            long length = Length, total = 0, offset = 0;
            if (!NativeFile.CanMapAllocation) return null;
            while (offset < length)
            {
                var run = NativeFile.FindRun(_control, offset, length);
                if (run is null) return length; // the filesystem cannot say: all of it counts, as SEEK_DATA would
                if (run.Value.IsData) total += run.Value.RunEnd - offset;
                offset = run.Value.RunEnd;
            }
            return total;
        }
    }

    /// <inheritdoc />
    long? IBlockStorage.AllocatedBytes => AllocatedBytes;

    /// <inheritdoc />
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_direct != null && IsDirectAligned(offset, buffer.Length)) return DirectReadAsync(offset, buffer, cancellationToken);
        return BufferedReadAsync(offset, buffer, cancellationToken);
    }

    /// <summary>The default of <see cref="InlineReadLimit"/>.</summary>
    public const long DefaultInlineReadLimit = 128 * 1024;

    /// <summary>
    /// Buffered reads up to this size are first tried from the page cache on the calling thread (preadv2 with
    /// RWF_NOWAIT); larger ones, and any that would block, go to the thread pool. Set by
    /// <see cref="SetInlineReadLimit"/>; see <see cref="ImageOpenOptions.InlineReadLimit"/>.
    /// </summary>
    public long InlineReadLimit { get; private set; } = DefaultInlineReadLimit;

    /// <inheritdoc />
    /// <remarks>Zero or less: every buffered read goes to the thread pool.</remarks>
    public void SetInlineReadLimit(long bytes) => InlineReadLimit = bytes;

    private ValueTask BufferedReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (buffer.Length <= InlineReadLimit)
        {
            int cached = NativeFile.TryReadCached(_handle, buffer.Span, offset);
            if (cached == buffer.Length) return ValueTask.CompletedTask;
            if (cached > 0) return ReadRestAsync(offset, buffer, cached, cancellationToken);
            if (cached == 0)
            {
                buffer.Span.Clear(); // at or past the end of the file
                return ValueTask.CompletedTask;
            }
        }
        var first = RandomAccess.ReadAsync(_handle, buffer, offset, cancellationToken);
        if (!first.IsCompletedSuccessfully) return FinishReadAsync(first, offset, buffer, cancellationToken);
        int done = first.Result; // a ValueTask is consumed once: its result is read here and nowhere else
        return done == buffer.Length ? ValueTask.CompletedTask : ReadRestAsync(offset, buffer, done, cancellationToken);
    }

    /// <summary>Waits for the first read, then continues a short one.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FinishReadAsync(ValueTask<int> first, long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int done = await first.ConfigureAwait(false);
        if (done < buffer.Length) await ReadRestAsync(offset, buffer, done, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Continues a read that returned <paramref name="done"/> bytes; past the end of file reads as zeroes.</summary>
    private async ValueTask ReadRestAsync(long offset, Memory<byte> buffer, int done, CancellationToken cancellationToken)
    {
        while (done > 0 && done < buffer.Length)
        {
            int n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, cancellationToken).ConfigureAwait(false);
            if (n == 0) break;
            done += n;
        }
        buffer.Span[done..].Clear();
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (_syncEachWrite) return WriteThenSyncAsync(offset, data, cancellationToken);
        return WriteUnsyncedAsync(offset, data, cancellationToken);
    }

    private ValueTask WriteUnsyncedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_direct != null && IsDirectAligned(offset, data.Length)) return DirectWriteAsync(offset, data, cancellationToken);
        if (_lane != null) return _lane.WriteAsync(offset, data, cancellationToken);
        return RandomAccess.WriteAsync(_handle, data, offset, cancellationToken);
    }

    /// <summary>macOS write-through: the write, then F_FULLFSYNC, so a completed write is on the medium as promised.</summary>
    private async ValueTask WriteThenSyncAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await WriteUnsyncedAsync(offset, data, cancellationToken).ConfigureAwait(false);
        await Task.Run(() => NativeFile.Sync(_direct ?? _handle), cancellationToken).ConfigureAwait(false);
    }

    private bool IsDirectAligned(long offset, int length) => ((offset | (long)length) & (_directAlignment - 1)) == 0;

    private bool NeedsBounce(ReadOnlyMemory<byte> memory) => _directAlignment > 1 && !DirectIO.IsAligned(memory);

    private async ValueTask DirectReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        if (!NeedsBounce(buffer))
        {
            int n = await RandomAccess.ReadAsync(_direct!, buffer, offset, ct).ConfigureAwait(false);
            if (n < buffer.Length) await BufferedReadAsync(offset + n, buffer[n..], ct).ConfigureAwait(false); // short at EOF
            return;
        }
        nint bounce = DirectIO.Rent();
        try
        {
            while (buffer.Length > 0)
            {
                int chunk = Math.Min(buffer.Length, DirectIO.BounceSize);
                var native = new DirectIO.NativeBuffer(bounce, chunk).Memory;
                int n = await RandomAccess.ReadAsync(_direct!, native, offset, ct).ConfigureAwait(false);
                native.Span[..n].CopyTo(buffer.Span);
                if (n < chunk)
                {
                    await BufferedReadAsync(offset + n, buffer[n..], ct).ConfigureAwait(false); // short at EOF
                    return;
                }
                buffer = buffer[chunk..];
                offset += chunk;
            }
        }
        finally
        {
            DirectIO.Return(bounce);
        }
    }

    private async ValueTask DirectWriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (!NeedsBounce(data))
        {
            await RandomAccess.WriteAsync(_direct!, data, offset, ct).ConfigureAwait(false);
            return;
        }
        nint bounce = DirectIO.Rent();
        try
        {
            while (data.Length > 0)
            {
                int chunk = Math.Min(data.Length, DirectIO.BounceSize);
                var native = new DirectIO.NativeBuffer(bounce, chunk).Memory;
                data.Span[..chunk].CopyTo(native.Span);
                await RandomAccess.WriteAsync(_direct!, (ReadOnlyMemory<byte>)native, offset, ct).ConfigureAwait(false);
                data = data[chunk..];
                offset += chunk;
            }
        }
        finally
        {
            DirectIO.Return(bounce);
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Buffered files take one RWF_DSYNC write of the range, which syncs that range and not the rest of the file's
    /// dirty pages (a flush there would write back everything written since the last one). Write-through files are
    /// durable on every write; under cache=unsafe nothing is ever synced; under O_DIRECT (and where RWF_DSYNC is not
    /// available: macOS, Windows, QED_PORTABLE_IO) the write is followed by a flush.
    /// </remarks>
    public ValueTask WriteDurableAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (WritesAreDurable || _cache == CacheMode.Unsafe) return WriteAsync(offset, data, cancellationToken);
        if (_direct != null) return BlockStorage.WriteThenFlushAsync(this, offset, data, cancellationToken);
        return new ValueTask(Task.Run(() =>
        {
            if (!NativeFile.TryWriteDsync(_handle, data.Span, offset))
            {
                RandomAccess.Write(_handle, data.Span, offset);
                NativeFile.Sync(_handle);
            }
        }, cancellationToken));
    }

    /// <inheritdoc />
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (!CanWrite || _cache == CacheMode.Unsafe) return ValueTask.CompletedTask;
        // One sync covers the direct handle's writes too: both are the same file (fdatasync, F_FULLFSYNC and
        // FlushFileBuffers act on the file, not the descriptor).
        return new ValueTask(Task.Run(() => NativeFile.Sync(_handle), cancellationToken));
    }

    /// <inheritdoc />
    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        RandomAccess.SetLength(_handle, length);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    /// <remarks>
    /// fallocate: the new range becomes unwritten extents, which read as zeroes and take a write without the block
    /// reservation a hole needs (on ext4 a 4 KiB write into reserved space costs about a quarter less). Where the
    /// filesystem or host cannot (macOS, Windows, QED_PORTABLE_IO), the length is set: a hole where the file is
    /// sparse (Linux, APFS, NTFS once marked sparse), else space allocated and zeroed by the filesystem.
    /// </remarks>
    public ValueTask GrowAsync(long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        long current = Length;
        if (length <= current) return ValueTask.CompletedTask;
        if (!NativeFile.TryAllocate(_handle, current, length - current)) RandomAccess.SetLength(_handle, length);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    /// <remarks>
    /// A hole where the host can punch one (fallocate PUNCH_HOLE, F_PUNCHHOLE, FSCTL_SET_ZERO_DATA); elsewhere zeroes
    /// are written, up to the end of the file only (bytes past it already read as zeroes, and the length must not change).
    /// </remarks>
    public async ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        if (length <= 0) return;
        if (NativeFile.TryPunchHole(_control, offset, length)) return;
        long end = Math.Min(offset + length, Length);
        if (end > offset) await Zeroes.WriteAsync(this, offset, end - offset, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default)
    {
        var run = NativeFile.FindRun(_control, offset, offset + maxLength);
        return ValueTask.FromResult(run is null ? (true, maxLength) : (run.Value.IsData, run.Value.RunEnd - offset));
    }

    private void ThrowIfReadOnly()
    {
        if (!CanWrite) throw new InvalidOperationException($"'{Name}' is open read-only.");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _locks?.Dispose();
        PosixLocks.Close(_id, _direct, _control == _handle ? null : _control, _handle);
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
