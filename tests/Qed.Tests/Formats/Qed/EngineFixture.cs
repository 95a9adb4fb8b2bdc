using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Tests.Formats.Qed;

/// <summary>
/// The QED engine's components wired over one <see cref="MemoryStorage"/> as <see cref="QedImage"/> wires them, for
/// tests of one component at a time: 4 KiB clusters, 2-cluster tables (1024 entries, 4 MiB per L2 table), the header
/// in cluster 0 and L1 in clusters 1-2, so the first free cluster is at 12 KiB.
/// </summary>
internal sealed class EngineFixture
{
    public const int Cluster = 4096;
    public const int TableClusters = 2;
    public const int TableBytes = Cluster * TableClusters;
    public const long L1Offset = Cluster;
    public const long FirstFree = L1Offset + TableBytes;

    public readonly MemoryStorage Memory;
    public readonly RecordingStorage File;
    public readonly QedHeader Header;
    public readonly QedGeometry Geometry;
    public readonly Lock MetaLock = new();
    public readonly FailureLatch Latch;
    public readonly L1Table L1;
    public readonly ClusterAllocator Allocator;
    public readonly EntryValidator Validator;
    public readonly MetadataWriteBack WriteBack;
    public readonly L2TableCache Cache;

    /// <param name="tables">L2 tables to put on disk first: table i at <see cref="FirstFree"/> + i tables, entries set by <paramref name="fill"/>.</param>
    public EngineFixture(int tables = 0, Func<int, int, ulong>? fill = null, long cacheBudget = 64L << 20,
        bool dataBeforeEntries = false, bool writeThrough = false, bool skipDataFlush = false, ulong[]? l1Entries = null,
        long extraFileBytes = 0)
    {
        Header = NewHeader();
        Geometry = new QedGeometry(Header);
        Memory = new MemoryStorage("engine.qed");
        var bytes = new byte[FirstFree + (long)tables * TableBytes + extraFileBytes];
        Header.WriteTo(bytes);
        var l1 = l1Entries ?? new ulong[TableBytes / 8];
        for (int i = 0; i < tables; i++)
        {
            long at = FirstFree + (long)i * TableBytes;
            if (l1Entries is null) l1[i] = (ulong)at;
            var entries = new ulong[TableBytes / 8];
            for (int j = 0; j < entries.Length; j++) entries[j] = fill?.Invoke(i, j) ?? 0;
            TableCodec.Encode(entries, 0, entries.Length).CopyTo(bytes, at);
        }
        TableCodec.Encode(l1, 0, l1.Length).CopyTo(bytes, L1Offset);
        Memory.WriteAsync(0, bytes).AsTask().GetAwaiter().GetResult();
        File = new RecordingStorage(Memory);
        Latch = new FailureLatch(File.Name);
        L1 = new L1Table(File, Geometry, l1);
        Allocator = new ClusterAllocator(File, Cluster, File.Length, MetaLock);
        Validator = new EntryValidator(Geometry, Allocator, Latch);
        Validator.IndexTables(L1);
        WriteBack = new MetadataWriteBack(File, L1, Latch, MetaLock, writeThrough, dataBeforeEntries, skipDataFlush);
        Cache = new L2TableCache(File, Geometry, L1, Validator, WriteBack, MetaLock, cacheBudget);
    }

    /// <summary>A header for the fixture's geometry, 1 GiB guest size.</summary>
    public static QedHeader NewHeader(QedFeatures features = QedFeatures.None) => new()
    {
        Magic = QedHeader.MagicValue,
        ClusterSize = Cluster,
        TableSize = TableClusters,
        HeaderSize = 1,
        Features = features,
        L1TableOffset = (ulong)L1Offset,
        ImageSize = 1UL << 30,
    };

    /// <summary>Reads a u64 at a file offset of the underlying memory.</summary>
    public ulong ReadU64(long offset)
    {
        var b = new byte[8];
        Memory.ReadAsync(offset, b).AsTask().GetAwaiter().GetResult();
        return BitConverter.ToUInt64(b);
    }
}

/// <summary>
/// Storage that logs every write ("W offset length"), flush ("F") and length change, and can delay flushes or table
/// reads, or fail writes, so a test can see the order a component puts things on disk in.
/// </summary>
internal sealed class RecordingStorage(IBlockStorage inner) : ForwardingStorage(inner)
{
    private readonly List<string> _log = new();
    public int Flushes, Reads;
    public TimeSpan FlushDelay = TimeSpan.Zero;
    public Func<long, Task>? BeforeRead;
    public Func<long, bool>? FailWrite;

    /// <summary>The log so far.</summary>
    public string[] Log { get { lock (_log) return [.. _log]; } }

    public void ClearLog() { lock (_log) _log.Clear(); }

    private void Add(string entry) { lock (_log) _log.Add(entry); }

    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        Interlocked.Increment(ref Reads);
        if (BeforeRead != null) await BeforeRead(offset);
        await Inner.ReadAsync(offset, buffer, ct);
    }

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        if (FailWrite?.Invoke(offset) == true) throw new IOException($"injected write failure at {offset}");
        Add($"W {offset} {data.Length}");
        return Inner.WriteAsync(offset, data, ct);
    }

    public override async ValueTask FlushAsync(CancellationToken ct = default)
    {
        Interlocked.Increment(ref Flushes);
        Add("F");
        if (FlushDelay > TimeSpan.Zero) await Task.Delay(FlushDelay, ct);
        await Inner.FlushAsync(ct);
    }

    public override ValueTask SetLengthAsync(long length, CancellationToken ct = default)
    {
        Add($"L {length}");
        return Inner.SetLengthAsync(length, ct);
    }

    public override ValueTask GrowAsync(long length, CancellationToken ct = default)
    {
        Add($"G {length}");
        return Inner.GrowAsync(length, ct);
    }
}
