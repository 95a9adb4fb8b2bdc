using System.Buffers.Binary;
using System.Text;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>
/// Each malformed-input case of the protocol reference (section 4.4 and the disconnect-versus-error list), sent over
/// a raw socket. Cases answered with an error are followed by a good request to prove the stream stayed in step.
/// </summary>
public sealed class MalformedInputTests : IAsyncLifetime
{
    private const uint ErrUnsup = 0x80000001, ErrPolicy = 0x80000002, ErrInvalid = 0x80000003, ErrUnknown = 0x80000006, ErrTooBig = 0x80000009;
    private const uint EPERM = 1, EINVAL = 22, ENOSPC = 28, ENOTSUP = 95;
    private const int Size = 1 << 20;
    private readonly TempDir _dir = new();
    private TestServer _server = null!;
    private TestServer _readOnly = null!;

    public async Task InitializeAsync()
    {
        var data = new byte[Size];
        new Random(5).NextBytes(data);
        await File.WriteAllBytesAsync(_dir["disk.raw"], data);
        await File.WriteAllBytesAsync(_dir["ro.raw"], data);
        _server = await TestServer.StartAsync(_dir["disk.raw"], format: ImageFormat.Raw);
        _readOnly = await TestServer.StartAsync(_dir["ro.raw"], readOnly: true, format: ImageFormat.Raw);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _readOnly.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<RawNbdClient> OpenAsync(bool structured = true, params string[] contexts)
    {
        var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.OpenAsync("disk", structured, contexts);
        return c;
    }

    /// <summary>A READ of 4 KiB at 0 still works: the connection is alive and in step.</summary>
    private static async Task AssertInStepAsync(RawNbdClient c, ulong cookie = 77)
    {
        await c.SendRequestAsync(0, 0, 4096, cookie: cookie);
        var reply = await c.ReadReplyAsync();
        Assert.Equal(cookie, reply.Cookie);
        if (reply.Magic == RawNbdClient.SimpleMagic) { Assert.Equal(0u, reply.Error); await c.ReadExactAsync(4096); }
        else { Assert.Equal(1, reply.Type); Assert.Equal(8 + 4096, reply.Payload.Length); }
    }

    private static async Task AssertErrorAsync(RawNbdClient c, uint expected, ulong cookie)
    {
        var reply = await c.ReadReplyAsync();
        Assert.Equal(cookie, reply.Cookie);
        Assert.Equal(expected, reply.Error);
        Assert.True(reply.Done);
        if (reply.Magic == RawNbdClient.ChunkMagic)
        {
            Assert.Equal(0x8001, reply.Type);
            int messageLength = BinaryPrimitives.ReadUInt16BigEndian(reply.Payload.AsSpan(4));
            Assert.Equal(6 + messageLength, reply.Payload.Length);
            Assert.True(reply.Payload.Length < 1000, "QEMU refuses non-data chunks over 1000 bytes");
        }
    }

    [Fact]
    public async Task UnknownClientFlagDisconnects()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync(0x83);
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task UnknownOptionGetsUnsupAndHandshakeContinues()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(99, [1, 2, 3]);
        var r = await c.ReadOptionReplyAsync();
        Assert.Equal((99u, ErrUnsup), (r.Option, r.Type));
        await c.SendOptionAsync(11, []); // EXTENDED_HEADERS: refused until fully implemented
        Assert.Equal(ErrUnsup, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(7, RawNbdClient.GoData("disk"));
        Assert.Equal(1u, (await c.ReadOptionRepliesAsync())[^1].Type);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task HugeOptionLengthDisconnects()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(7, [], claimedLength: 1u << 30);
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task BadOptionMagicDisconnects()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(7, RawNbdClient.GoData("disk"), magic: 0x1122334455667788);
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task GoForUnknownExportGetsErrUnknownAndHandshakeContinues()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(7, RawNbdClient.GoData("nope", 0, 1, 2, 3));
        var replies = await c.ReadOptionRepliesAsync();
        Assert.Equal(ErrUnknown, Assert.Single(replies).Type);
        await c.SendOptionAsync(7, RawNbdClient.GoData("disk"));
        Assert.Equal(1u, (await c.ReadOptionRepliesAsync())[^1].Type);
    }

    [Fact]
    public async Task ExportNameForUnknownExportDisconnects()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(1, Encoding.UTF8.GetBytes("nope"));
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task ExportNameSendsSizeAndFlagsWithoutPaddingUnderNoZeroes()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync(3);
        await c.SendOptionAsync(1, Encoding.UTF8.GetBytes("disk"));
        var reply = await c.ReadExactAsync(10);
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)) & 1);
        // Without structured replies a READ gets a simple reply with the data right after (no padding in between).
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task MalformedOptionDataGetsErrInvalid()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(3, [0]); // LIST with data
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(8, [0]); // STRUCTURED_REPLY with data
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(10, RawNbdClient.MetaData("disk", "base:allocation")); // SET before STRUCTURED_REPLY
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        var go = RawNbdClient.GoData("disk", 3);
        await c.SendOptionAsync(7, go[..^1]); // truncated info list
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        var badName = RawNbdClient.GoData("disk");
        BinaryPrimitives.WriteUInt32BigEndian(badName, 5000); // name longer than the data
        await c.SendOptionAsync(6, badName);
        Assert.Equal(ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(5, []); // STARTTLS on a server without TLS
        Assert.Equal(ErrPolicy, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(8, []);
        Assert.Equal(1u, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync(10, RawNbdClient.MetaData("disk", [.. Enumerable.Repeat("base:allocation", 1000)]));
        Assert.Equal(ErrTooBig, (await c.ReadOptionReplyAsync()).Type);
        // Unknown namespaces are ignored, not rejected.
        await c.SendOptionAsync(10, RawNbdClient.MetaData("disk", "nosuch:thing", "base:allocation"));
        var set = await c.ReadOptionRepliesAsync();
        Assert.Equal([4u, 1u], set.Select(r => r.Type));
        await c.SendOptionAsync(7, RawNbdClient.GoData("disk"));
        Assert.Equal(1u, (await c.ReadOptionRepliesAsync())[^1].Type);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task GoRepliesExportInfoBeforeAckAndAbortIsAcked()
    {
        await using var c = await RawNbdClient.ConnectAsync(_server.Port);
        await c.GreetAsync();
        await c.SendOptionAsync(6, RawNbdClient.GoData("disk")); // INFO with no requests
        var info = await c.ReadOptionRepliesAsync();
        Assert.Equal(1u, info[^1].Type);
        Assert.Contains(info, r => r.Type == 3 && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0 && r.Data.Length == 12);
        await c.SendOptionAsync(3, []);
        var list = await c.ReadOptionRepliesAsync();
        Assert.Equal("disk", Encoding.UTF8.GetString(list[0].Data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(list[0].Data)));
        await c.SendOptionAsync(2, []);
        Assert.Equal(1u, (await c.ReadOptionReplyAsync()).Type);
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task ReadPastEndIsEinvalAndConnectionContinues()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(0, Size - 512, 1024, cookie: 5);
        await AssertErrorAsync(c, EINVAL, 5);
        // Offset near 2^64: the range check must not overflow.
        await c.SendRequestAsync(0, ulong.MaxValue - 511, 1024, cookie: 6);
        await AssertErrorAsync(c, EINVAL, 6);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task WritePastEndIsEnospcAndPayloadIsConsumed()
    {
        await using var c = await OpenAsync();
        var payload = new byte[8192];
        Array.Fill(payload, (byte)0x28); // were it parsed as headers, the stream would fall out of step
        await c.SendRequestAsync(1, Size - 4096, 8192, cookie: 9, payload: payload);
        await AssertErrorAsync(c, ENOSPC, 9);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task ZeroLengthReadSucceeds()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(0, 0, 0, cookie: 3);
        var r = await c.ReadReplyAsync();
        Assert.Equal((3UL, 0u, (ushort)0, true), (r.Cookie, r.Error, r.Type, r.Done));
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task UnknownCommandAndFlagsAreEinval()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(99, 0, 512, cookie: 1);
        await AssertErrorAsync(c, EINVAL, 1);
        await c.SendRequestAsync(0, 0, 512, flags: 1 << 15, cookie: 2);
        await AssertErrorAsync(c, EINVAL, 2);
        await c.SendRequestAsync(0, 0, 512, flags: 1 << 3, cookie: 3); // REQ_ONE on READ
        await AssertErrorAsync(c, EINVAL, 3);
        await c.SendRequestAsync(3, 4096, 0, cookie: 4); // FLUSH with an offset
        await AssertErrorAsync(c, EINVAL, 4);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task DfWithoutStructuredRepliesIsEinvalAsSimpleReply()
    {
        await using var c = await OpenAsync(structured: false);
        await c.SendRequestAsync(0, 0, 512, flags: 1 << 2, cookie: 8);
        var r = await c.ReadReplyAsync();
        Assert.Equal((RawNbdClient.SimpleMagic, 8UL, EINVAL), (r.Magic, r.Cookie, r.Error));
        await c.SendRequestAsync(0, Size, 512, cookie: 9);
        r = await c.ReadReplyAsync();
        Assert.Equal((RawNbdClient.SimpleMagic, 9UL, EINVAL), (r.Magic, r.Cookie, r.Error));
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task BlockStatusWithoutMetaContextIsEinval()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(7, 0, 4096, cookie: 4);
        await AssertErrorAsync(c, EINVAL, 4);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task OversizedReadIsEinvalAndOversizedWriteIsDrained()
    {
        var big = await DiskImageOfAsync(128L << 20);
        await using var c = await RawNbdClient.ConnectAsync(big.Port);
        await c.OpenAsync("disk");
        await c.SendRequestAsync(0, 0, 64u << 20, cookie: 1);
        await AssertErrorAsync(c, EINVAL, 1);
        // A 64 MiB WRITE is above the 32 MiB maximum: the payload is drained and the request refused.
        await c.SendRequestAsync(1, 0, 64u << 20, cookie: 2, payload: new byte[64 << 20]);
        await AssertErrorAsync(c, EINVAL, 2);
        await AssertInStepAsync(c);
        // Above what the server will drain: a hard disconnect, as the spec allows.
        await c.SendRequestAsync(1, 0, 65u << 20, cookie: 3);
        Assert.True(await c.IsClosedAsync());
        await big.DisposeAsync();
    }

    private async Task<TestServer> DiskImageOfAsync(long size)
    {
        string path = _dir[$"big{size}.raw"];
        await using (var f = File.Create(path)) f.SetLength(size);
        return await TestServer.StartAsync(path, format: ImageFormat.Raw);
    }

    [Fact]
    public async Task BadRequestMagicDisconnects()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(0, 0, 512, magic: 0x21e41c71); // an extended header that was never negotiated
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task DiscWithOffsetDisconnects()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(2, 512, 0);
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task ReadThenDiscIsAnsweredThenClosed()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(0, 0, 1 << 20, cookie: 11);
        await c.SendRequestAsync(2, 0, 0, cookie: 12);
        var r = await c.ReadReplyAsync();
        Assert.Equal((11UL, (ushort)1, 8 + (1 << 20)), (r.Cookie, r.Type, r.Payload.Length));
        Assert.True(await c.IsClosedAsync());
    }

    [Fact]
    public async Task WritesOnReadOnlyExportAreEpermWithPayloadConsumed()
    {
        await using var c = await RawNbdClient.ConnectAsync(_readOnly.Port);
        var (_, flags) = await c.OpenAsync("disk");
        Assert.Equal(2, flags & 2);
        await c.SendRequestAsync(1, 0, 4096, cookie: 1, payload: new byte[4096]);
        await AssertErrorAsync(c, EPERM, 1);
        await c.SendRequestAsync(4, 0, 4096, cookie: 2);
        await AssertErrorAsync(c, EPERM, 2);
        await c.SendRequestAsync(6, 0, 4096, cookie: 3);
        await AssertErrorAsync(c, EPERM, 3);
        await AssertInStepAsync(c);
    }

    [Fact]
    public async Task FastZeroThatCannotBeFastIsEnotsupAndLeavesData()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(0, 8192, 4096, cookie: 1);
        var before = (await c.ReadReplyAsync()).Payload[8..];
        await c.SendRequestAsync(6, 8192, 4096, flags: (1 << 1) | (1 << 4), cookie: 2); // NO_HOLE | FAST_ZERO
        await AssertErrorAsync(c, ENOTSUP, 2);
        await c.SendRequestAsync(0, 8192, 4096, cookie: 3);
        Assert.Equal(before, (await c.ReadReplyAsync()).Payload[8..]);
    }

    [Fact]
    public async Task EofMidRequestEndsOnlyThatConnection()
    {
        await using var good = await OpenAsync();
        await using (var bad = await OpenAsync())
        {
            await bad.SendRequestAsync(1, 0, 65536, cookie: 1, payload: new byte[100]); // payload cut short
        }
        await using (var garbage = await RawNbdClient.ConnectAsync(_server.Port))
        {
            await garbage.ReadExactAsync(18);
            await garbage.WriteAsync(Enumerable.Repeat((byte)0xff, 4096).ToArray());
            Assert.True(await garbage.IsClosedAsync());
        }
        await AssertInStepAsync(good);
    }
}
