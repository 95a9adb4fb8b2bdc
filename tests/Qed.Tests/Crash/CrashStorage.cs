using Qed.Storage;

namespace Qed.Tests.Crash;

/// <summary>
/// Fault-injecting storage: behaves as memory, and records every write, truncation, hole punch and flush in the order
/// they took effect. <see cref="Materialize"/> builds the file as a crash after any prefix of that log could leave it:
/// everything before the last flush kept, and any subset of the later operations kept, each write possibly torn at
/// 512-byte granularity (some of its sectors reach the disk, others do not).
/// </summary>
internal sealed class CrashStorage : IBlockStorage
{
    /// <summary>What happened to the storage, in order.</summary>
    public enum OpKind { Write, Flush, SetLength, Zero, Settle }

    /// <summary>
    /// One logged operation. <see cref="Data"/> is a private copy of the bytes written. A <see cref="OpKind.Settle"/>
    /// marks the completion of the durable write logged at index <see cref="Offset"/>: from there on that write survives
    /// every crash, while other unflushed operations still meet their fate.
    /// </summary>
    public sealed record Op(OpKind Kind, long Offset, long Length, byte[]? Data);

    /// <summary>How a crash treats one unflushed operation.</summary>
    public enum Fate { Keep, Drop, Tear }

    private readonly MemoryStorage _live;
    private readonly byte[] _initial;
    private readonly List<Op> _log = new();
    private readonly Lock _lock = new();

    // The durable image as of log index _checkpointAt (a flush boundary), advanced as crash points increase.
    private byte[] _checkpoint;
    private long _checkpointLength;
    private int _checkpointAt;
    private byte[] _scratch = [];

    /// <summary>Starts from <paramref name="initial"/>, which is taken as durable.</summary>
    public CrashStorage(byte[] initial, string name = "crash")
    {
        _initial = initial;
        _live = new MemoryStorage(initial, name);
        _checkpoint = (byte[])initial.Clone();
        _checkpointLength = initial.Length;
        Name = name;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool CanWrite => true;

    /// <inheritdoc />
    public long Length => _live.Length;

    /// <summary>The operations so far (a snapshot).</summary>
    public IReadOnlyList<Op> Log { get { lock (_lock) return _log.ToArray(); } }

    /// <summary>The number of operations logged so far: a crash point.</summary>
    public int Position { get { lock (_lock) return _log.Count; } }

    /// <inheritdoc />
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _live.ReadAsync(offset, buffer, cancellationToken);

    /// <inheritdoc />
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _log.Add(new Op(OpKind.Write, offset, data.Length, data.ToArray()));
            return _live.WriteAsync(offset, data, cancellationToken);
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteDurableAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        int index;
        ValueTask write;
        lock (_lock)
        {
            index = _log.Count;
            _log.Add(new Op(OpKind.Write, offset, data.Length, data.ToArray()));
            write = _live.WriteAsync(offset, data, cancellationToken);
        }
        await write;
        lock (_lock) _log.Add(new Op(OpKind.Settle, index, 0, null));
    }

    /// <inheritdoc />
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) _log.Add(new Op(OpKind.Flush, 0, 0, null));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask SetLengthAsync(long length, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _log.Add(new Op(OpKind.SetLength, 0, length, null));
            return _live.SetLengthAsync(length, cancellationToken);
        }
    }

    /// <inheritdoc />
    public ValueTask ZeroRangeAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            _log.Add(new Op(OpKind.Zero, offset, length, null));
            return _live.ZeroRangeAsync(offset, length, cancellationToken);
        }
    }

    /// <inheritdoc />
    public ValueTask<(bool IsData, long Length)> GetAllocationAsync(long offset, long maxLength, CancellationToken cancellationToken = default) =>
        _live.GetAllocationAsync(offset, maxLength, cancellationToken);

    /// <summary>The index just after the last flush among the first <paramref name="crashPoint"/> operations.</summary>
    public int DurablePrefix(int crashPoint)
    {
        lock (_lock)
        {
            for (int i = crashPoint - 1; i >= 0; i--)
                if (_log[i].Kind == OpKind.Flush) return i + 1;
            return 0;
        }
    }

    /// <summary>
    /// The file after a crash when the first <paramref name="crashPoint"/> operations had been issued: everything up
    /// to the last flush among them is kept, and each later operation meets the fate <paramref name="fate"/> gives
    /// it (keep, drop, or for a write: keep a random subset of its 512-byte sectors, drawn from
    /// <paramref name="random"/>). Crash points must be asked for in non-decreasing order of their durable prefix.
    /// </summary>
    public MemoryStorage Materialize(int crashPoint, Func<int, Op, Fate> fate, Random random)
    {
        Op[] log;
        lock (_lock) log = _log.ToArray();
        int durable = DurablePrefix(crashPoint);
        if (durable < _checkpointAt)
        {
            _checkpoint = (byte[])_initial.Clone();
            _checkpointLength = _initial.Length;
            _checkpointAt = 0;
        }
        for (; _checkpointAt < durable; _checkpointAt++)
            Apply(ref _checkpoint, ref _checkpointLength, log[_checkpointAt], null);

        if (_scratch.Length < _checkpoint.Length) _scratch = new byte[_checkpoint.Length];
        Array.Copy(_checkpoint, _scratch, _checkpoint.Length);
        Array.Clear(_scratch, _checkpoint.Length, _scratch.Length - _checkpoint.Length);
        long length = _checkpointLength;
        var settled = new HashSet<long>();
        for (int i = durable; i < crashPoint; i++)
            if (log[i].Kind == OpKind.Settle) settled.Add(log[i].Offset);
        for (int i = durable; i < crashPoint; i++)
        {
            var op = log[i];
            var chosen = fate(i, op);
            if (settled.Contains(i)) chosen = Fate.Keep; // a durable write that completed before the crash
            switch (chosen)
            {
                case Fate.Keep: Apply(ref _scratch, ref length, op, null); break;
                case Fate.Tear when op.Kind == OpKind.Write: Apply(ref _scratch, ref length, op, random); break;
                case Fate.Tear: Apply(ref _scratch, ref length, op, null); break;
            }
        }
        // A copy in memory storage: the state is reopened and repaired without touching the log's buffers.
        return new MemoryStorage(_scratch.AsSpan(0, (int)length), "crashed.qed");
    }

    /// <summary>
    /// The file after a crash that lost every unflushed growth of the file: of the operations after the last flush
    /// among the first <paramref name="crashPoint"/>, those that would lengthen the file (a longer SetLength, a write
    /// ending past the current end) are dropped and the rest kept: in-place writes of tables and header land, new
    /// clusters past the durable end do not. Null when no operation would be dropped (the state is the all-kept one).
    /// </summary>
    public MemoryStorage? MaterializeWithoutGrowth(int crashPoint, Random random)
    {
        Op[] log;
        lock (_lock) log = _log.ToArray();
        int durable = DurablePrefix(crashPoint);
        var probe = Materialize(durable, (_, _) => Fate.Keep, random);
        long length = probe.Length;
        bool dropsAny = false;
        for (int i = durable; i < crashPoint; i++)
        {
            var op = log[i];
            if ((op.Kind == OpKind.SetLength && op.Length > length) || (op.Kind == OpKind.Write && op.Offset + op.Length > length))
            {
                dropsAny = true;
                break;
            }
            if (op.Kind == OpKind.SetLength) length = op.Length;
        }
        if (!dropsAny) return null;
        length = probe.Length;
        return Materialize(crashPoint, (i, op) =>
        {
            if (i < durable) return Fate.Keep;
            bool grows = (op.Kind == OpKind.SetLength && op.Length > length) || (op.Kind == OpKind.Write && op.Offset + op.Length > length);
            if (grows) return Fate.Drop;
            if (op.Kind == OpKind.SetLength) length = op.Length;
            return Fate.Keep;
        }, random);
    }

    /// <summary>Applies one operation; with <paramref name="tear"/>, a write keeps only a random subset of its sectors.</summary>
    private static void Apply(ref byte[] bytes, ref long length, Op op, Random? tear)
    {
        switch (op.Kind)
        {
            case OpKind.Flush:
            case OpKind.Settle:
                return;
            case OpKind.SetLength:
                Ensure(ref bytes, op.Length);
                if (op.Length < length) Array.Clear(bytes, (int)op.Length, (int)(length - op.Length));
                length = op.Length;
                return;
            case OpKind.Zero:
            {
                long end = Math.Min(op.Offset + op.Length, length);
                if (end > op.Offset) Array.Clear(bytes, (int)op.Offset, (int)(end - op.Offset));
                return;
            }
            case OpKind.Write:
            {
                var data = op.Data!;
                // Sectors are the unit a disk writes atomically: a torn write keeps some of them, in any pattern.
                for (int at = 0; at < data.Length;)
                {
                    long sectorEnd = ((op.Offset + at) / 512 + 1) * 512;
                    int n = (int)Math.Min(data.Length - at, sectorEnd - (op.Offset + at));
                    if (tear is null || tear.Next(2) == 0)
                    {
                        long end = op.Offset + at + n;
                        Ensure(ref bytes, end);
                        Array.Copy(data, at, bytes, op.Offset + at, n);
                        if (end > length) length = end;
                    }
                    at += n;
                }
                return;
            }
        }
    }

    private static void Ensure(ref byte[] bytes, long length)
    {
        if (length <= bytes.Length) return;
        Array.Resize(ref bytes, (int)Math.Max(length, bytes.Length * 2L));
    }

    /// <inheritdoc />
    public void Dispose() { }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
