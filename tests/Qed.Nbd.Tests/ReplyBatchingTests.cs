using System.Buffers.Binary;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>
/// The reader corks the reply writer while it works through requests it already has (ReplyWriter). A burst of
/// pipelined reads must still be answered in full, each with its own data, also when the burst needs more than the
/// connection's byte budget, so the reader waits for budget that only sent replies give back.
/// </summary>
public sealed class ReplyBatchingTests : IAsyncLifetime
{
    private const int Size = 4 << 20;
    private readonly TempDir _dir = new();
    private byte[] _data = [];

    public async Task InitializeAsync()
    {
        _data = new byte[Size];
        new Random(11).NextBytes(_data);
        await File.WriteAllBytesAsync(_dir["disk.raw"], _data);
    }

    public Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }

    [Theory]
    [InlineData(4 * 1024, 64L << 20)]        // small replies, plenty of budget: they go out in batches
    [InlineData(8 * 1024, 32L << 20)]
    [InlineData(200 * 1024, 32L << 20)]      // too big to gather, and 300 of them need more than the budget
    public async Task APipelinedBurstIsAnsweredInFull(int readSize, long budget)
    {
        await using var server = await TestServer.StartAsync(_dir["disk.raw"], format: ImageFormat.Raw,
            configure: o => o with { MaxBufferedBytes = budget });
        await using var c = await RawNbdClient.ConnectAsync(server.Port);
        await c.OpenAsync("disk", structured: true);
        const int count = 300;
        var rnd = new Random(readSize);
        var offsets = new long[count];
        var burst = new byte[count * 28];
        for (int i = 0; i < count; i++)
        {
            offsets[i] = rnd.NextInt64(0, Size - readSize);
            var m = burst.AsSpan(i * 28, 28);
            BinaryPrimitives.WriteUInt32BigEndian(m, RawNbdClient.RequestMagic);
            BinaryPrimitives.WriteUInt64BigEndian(m[8..], (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(m[16..], (ulong)offsets[i]);
            BinaryPrimitives.WriteUInt32BigEndian(m[24..], (uint)readSize);
        }
        await c.Stream.WriteAsync(burst); // every request before any reply is read
        await c.Stream.FlushAsync();

        var seen = new bool[count];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        for (int n = 0; n < count; n++)
        {
            var reply = await c.ReadReplyAsync().WaitAsync(timeout.Token);
            int i = (int)reply.Cookie;
            Assert.False(seen[i], $"two replies for request {i}");
            seen[i] = true;
            Assert.Equal(0u, reply.Error);
            Assert.True(reply.Done);
            Assert.Equal(8 + readSize, reply.Payload.Length);
            Assert.Equal((ulong)offsets[i], BinaryPrimitives.ReadUInt64BigEndian(reply.Payload));
            Assert.True(reply.Payload.AsSpan(8).SequenceEqual(_data.AsSpan((int)offsets[i], readSize)), $"request {i} got the wrong bytes");
        }
    }
}
