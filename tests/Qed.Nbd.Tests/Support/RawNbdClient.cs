using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Qed.Nbd.Tests.Support;

/// <summary>
/// A deliberately low-level NBD client for probing the server with well-formed and malformed input: every field
/// is the caller's choice. Written from the protocol document, independent of the server's code.
/// </summary>
internal sealed class RawNbdClient : IAsyncDisposable
{
    public const ulong IHaveOpt = 0x49484156454F5054;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleMagic = 0x67446698;
    public const uint ChunkMagic = 0x668e33ef;
    private readonly Socket _socket;
    private Stream _stream;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public Stream Stream => _stream;

    /// <summary>Runs a TLS client handshake over the connection (any server certificate accepted: this probes the server).</summary>
    public async Task StartTlsAsync()
    {
        var ssl = new System.Net.Security.SslStream(_stream, false, (_, _, _, _) => true);
        await ssl.AuthenticateAsClientAsync("localhost");
        _stream = ssl;
    }

    public static async Task<RawNbdClient> ConnectAsync(int port)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync("127.0.0.1", port);
        return new RawNbdClient(socket);
    }

    /// <summary>Wraps a socket the caller connected.</summary>
    public static RawNbdClient FromSocket(Socket socket) => new(socket);

    public static async Task<RawNbdClient> ConnectUnixAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawNbdClient(socket);
    }

    /// <summary>Reads the 18-byte greeting and sends the client flags.</summary>
    public async Task<ushort> GreetAsync(uint clientFlags = 3)
    {
        var greeting = await ReadExactAsync(18);
        Assert.Equal(0x4e42444d41474943UL, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        await WriteAsync(U32(clientFlags));
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendOptionAsync(uint option, byte[] data, ulong magic = IHaveOpt, uint? claimedLength = null)
    {
        var message = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, magic);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), claimedLength ?? (uint)data.Length);
        data.CopyTo(message, 16);
        return WriteAsync(message);
    }

    public sealed record OptionReply(uint Option, uint Type, byte[] Data);

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var header = await ReadExactAsync(20);
        Assert.Equal(0x3e889045565a9UL, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.True(length < 1 << 20, $"option reply of {length} bytes");
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)),
            await ReadExactAsync((int)length));
    }

    /// <summary>Reads option replies until the final one (ACK or an error).</summary>
    public async Task<List<OptionReply>> ReadOptionRepliesAsync()
    {
        var list = new List<OptionReply>();
        while (true)
        {
            var r = await ReadOptionReplyAsync();
            list.Add(r);
            if (r.Type == 1 || (r.Type & 0x80000000) != 0) return list;
        }
    }

    public static byte[] GoData(string name, params ushort[] infos)
    {
        byte[] n = Encoding.UTF8.GetBytes(name);
        var data = new byte[4 + n.Length + 2 + 2 * infos.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)n.Length);
        n.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + n.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + n.Length + 2 * i), infos[i]);
        return data;
    }

    public static byte[] MetaData(string name, params string[] queries)
    {
        var bytes = new List<byte>();
        byte[] n = Encoding.UTF8.GetBytes(name);
        bytes.AddRange(U32((uint)n.Length));
        bytes.AddRange(n);
        bytes.AddRange(U32((uint)queries.Length));
        foreach (var q in queries)
        {
            byte[] b = Encoding.UTF8.GetBytes(q);
            bytes.AddRange(U32((uint)b.Length));
            bytes.AddRange(b);
        }
        return [.. bytes];
    }

    /// <summary>Greets, optionally negotiates structured replies and meta contexts, then GO; returns (size, flags).</summary>
    public async Task<(ulong Size, ushort Flags)> OpenAsync(string export, bool structured = true, params string[] contexts)
    {
        await GreetAsync();
        if (structured)
        {
            await SendOptionAsync(8, []);
            Assert.Equal(1u, (await ReadOptionReplyAsync()).Type);
        }
        if (contexts.Length > 0)
        {
            await SendOptionAsync(10, MetaData(export, contexts));
            var replies = await ReadOptionRepliesAsync();
            Assert.Equal(1u, replies[^1].Type);
            ContextIds = replies.Where(r => r.Type == 4).ToDictionary(r => Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4), r => BinaryPrimitives.ReadUInt32BigEndian(r.Data));
        }
        await SendOptionAsync(7, GoData(export, 3));
        var go = await ReadOptionRepliesAsync();
        Assert.True(go[^1].Type == 1, $"GO failed with 0x{go[^1].Type:x}: {Encoding.UTF8.GetString(go[^1].Data)}");
        var info = go.Single(r => r.Type == 3 && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0);
        return (BinaryPrimitives.ReadUInt64BigEndian(info.Data.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(info.Data.AsSpan(10)));
    }

    public Dictionary<string, uint> ContextIds { get; private set; } = [];

    public Task SendRequestAsync(ushort type, ulong offset, uint length, ushort flags = 0, ulong cookie = 1, byte[]? payload = null, uint magic = RequestMagic)
    {
        var message = new byte[28 + (payload?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32BigEndian(message, magic);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(message.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(message.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(24), length);
        payload?.CopyTo(message, 28);
        return WriteAsync(message);
    }

    /// <summary>One reply or chunk. For a simple reply Type is 0xffff and the payload is empty (read data is not consumed).</summary>
    public sealed record Reply(uint Magic, ushort Flags, ushort Type, ulong Cookie, uint Error, byte[] Payload)
    {
        public bool Done => Magic == SimpleMagic || (Flags & 1) != 0;
    }

    public async Task<Reply> ReadReplyAsync()
    {
        var head = await ReadExactAsync(4);
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(head);
        if (magic == SimpleMagic)
        {
            var rest = await ReadExactAsync(12);
            return new Reply(magic, 0, 0xffff, BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4)), BinaryPrimitives.ReadUInt32BigEndian(rest), []);
        }
        Assert.Equal(ChunkMagic, magic);
        var h = await ReadExactAsync(16);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        Assert.True(length <= (64 << 20) + 8, $"chunk of {length} bytes");
        var payload = await ReadExactAsync((int)length);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(2));
        uint error = (type & 0x8000) != 0 ? BinaryPrimitives.ReadUInt32BigEndian(payload) : 0;
        return new Reply(magic, BinaryPrimitives.ReadUInt16BigEndian(h), type, BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(4)), error, payload);
    }

    /// <summary>True when the server closes the connection (EOF or reset) within the timeout.</summary>
    public async Task<bool> IsClosedAsync(TimeSpan? timeout = null)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buffer, cts.Token);
                if (n == 0) return true;
            }
        }
        catch (OperationCanceledException) { return false; }
        catch (IOException) { return true; }
    }

    public async Task WriteAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    public async Task<byte[]> ReadExactAsync(int count)
    {
        var buffer = new byte[count];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _stream.ReadExactlyAsync(buffer, cts.Token);
        return buffer;
    }

    public static byte[] U32(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        return b;
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}
