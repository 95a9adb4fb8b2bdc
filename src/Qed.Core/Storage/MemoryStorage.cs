namespace Qed.Storage;

/// <summary>
/// Sparse storage in memory, in 64 KiB pages allocated on first write: a 64 TiB image with little data costs little.
/// Thread-safe; every call runs synchronously under one lock.
/// </summary>
public sealed class MemoryStorage : IBlockStorage
{
    private const int PageBits = 16;
    private const int PageSize = 1 << PageBits;
    private readonly Dictionary<long, byte[]> _pages = new();
    private readonly Lock _lock = new();
    private long _length;

    /// <summary>Creates empty storage.</summary>
    /// <param name="name">The name errors and <see cref="IBlockStorage.Name"/> give it.</param>
    /// <param name="access"><see cref="FileAccess.ReadWrite"/>, or <see cref="FileAccess.Read"/> to refuse writes.</param>
    public MemoryStorage(string name = "memory", FileAccess access = FileAccess.ReadWrite)
    {
        if (access is not (FileAccess.Read or FileAccess.ReadWrite))
            throw new ArgumentOutOfRangeException(nameof(access), access, "MemoryStorage is either readable or readable and writable");
        Name = name;
        CanWrite = access == FileAccess.ReadWrite;
    }

    /// <summary>Creates storage holding a copy of <paramref name="content"/>.</summary>
    /// <param name="content">The bytes the storage starts with.</param>
    /// <param name="name">The name errors and <see cref="IBlockStorage.Name"/> give it.</param>
    /// <param name="access"><see cref="FileAccess.ReadWrite"/>, or <see cref="FileAccess.Read"/> to refuse writes.</param>
    public MemoryStorage(ReadOnlySpan<byte> content, string name = "memory", FileAccess access = FileAccess.ReadWrite) : this(name, access)
    {
        WriteCore(0, content);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool CanWrite { get; }

    /// <inheritdoc />
    public long Length { get { lock (_lock) return _length; } }

    /// <summary>Flushes counted, for tests that assert on write ordering.</summary>
    internal int FlushCount { get; private set; }

    /// <summary>A copy of the whole content.</summary>
    public byte[] ToArray()
    {
        lock (_lock)
        {
            var result = new byte[_length];
            ReadCore(0, result);
            return result;
        }
    }

    /// <inheritdoc />
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        lock (_lock) ReadCore(offset, buffer.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (!CanWrite) throw new InvalidOperationException($"'{Name}' is open read-only.");
        lock (_lock) WriteCore(offset, data.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) FlushCount++;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        lock (_lock)
        {
            if (length < _length) ClearCore(length, _length - length, dropWholePages: true);
            _length = length;
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            long end = Math.Min(offset + length, _length);
            if (end > offset) ClearCore(offset, end - offset, dropWholePages: true);
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            long end = offset + maxLength;
            bool isData = _pages.ContainsKey(offset >> PageBits);
            long pos = ((offset >> PageBits) + 1) << PageBits;
            while (pos < end && _pages.ContainsKey(pos >> PageBits) == isData) pos += PageSize;
            return ValueTask.FromResult((isData, Math.Min(pos, end) - offset));
        }
    }

    private void ReadCore(long offset, Span<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            int inPage = (int)(offset & (PageSize - 1));
            int n = Math.Min(buffer.Length, PageSize - inPage);
            if (offset < _length && _pages.TryGetValue(offset >> PageBits, out var page))
            {
                int valid = (int)Math.Min(n, _length - offset);
                page.AsSpan(inPage, valid).CopyTo(buffer);
                buffer.Slice(valid, n - valid).Clear();
            }
            else
            {
                buffer[..n].Clear();
            }
            buffer = buffer[n..];
            offset += n;
        }
    }

    private void WriteCore(long offset, ReadOnlySpan<byte> data)
    {
        long end = offset + data.Length;
        while (data.Length > 0)
        {
            int inPage = (int)(offset & (PageSize - 1));
            int n = Math.Min(data.Length, PageSize - inPage);
            if (!_pages.TryGetValue(offset >> PageBits, out var page))
                _pages[offset >> PageBits] = page = new byte[PageSize];
            data[..n].CopyTo(page.AsSpan(inPage));
            data = data[n..];
            offset += n;
        }
        if (end > _length) _length = end;
    }

    private void ClearCore(long offset, long length, bool dropWholePages)
    {
        long end = offset + length;
        while (offset < end)
        {
            int inPage = (int)(offset & (PageSize - 1));
            int n = (int)Math.Min(end - offset, PageSize - inPage);
            long index = offset >> PageBits;
            if (_pages.TryGetValue(index, out var page))
            {
                if (dropWholePages && n == PageSize) _pages.Remove(index);
                else page.AsSpan(inPage, n).Clear();
            }
            offset += n;
        }
    }

    /// <inheritdoc />
    public void Dispose() { }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
