namespace Qed.Formats.Qed;

/// <summary>
/// What lies beneath the image: the backing image, or none once a stream detached it; and the images detached while
/// the image was open, kept until close because reads that began on them may still be using them.
/// </summary>
/// <remarks>
/// Invariants: <see cref="Current"/> is read once per use (a stream may switch it meanwhile), and every layer read
/// through this reads the same bytes before and after a switch (the caller copied in what the skipped layers held);
/// a detached image is disposed only at close.
/// </remarks>
internal sealed class BackingChain(DiskImage? backing)
{
    private volatile DiskImage? _current = backing;
    private readonly List<DiskImage> _retired = new(); // under its own monitor

    /// <summary>The backing image now, or null.</summary>
    public DiskImage? Current => _current;

    /// <summary>Reads what lies beneath the image: the backing image, and zeroes past its end or without one.</summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        var backing = _current; // read once: a stream may detach it meanwhile
        long below = backing is null ? 0 : Math.Max(0, Math.Min(buffer.Length, backing.Size - offset));
        if (below > 0) await backing!.ReadAsync(offset, buffer[..(int)below], ct).ConfigureAwait(false);
        buffer.Span[(int)below..].Clear();
    }

    /// <summary>Whether guest <paramref name="offset"/> lies inside the backing image (so unallocated clusters show it).</summary>
    public bool Covers(long offset)
    {
        var backing = _current;
        return backing != null && offset < backing.Size;
    }

    /// <summary>Makes <paramref name="backing"/> the layer beneath; the previous one is kept until close.</summary>
    public void Switch(DiskImage? backing)
    {
        var previous = _current;
        _current = backing;
        if (previous != null && previous != backing) lock (_retired) _retired.Add(previous);
    }

    /// <summary>Disposes the backing image and every detached one.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_current != null) await _current.DisposeAsync().ConfigureAwait(false);
        foreach (var retired in _retired) await retired.DisposeAsync().ConfigureAwait(false);
    }
}
