using System.Collections.Concurrent;

namespace Qed.Nbd.Tests.Support;

/// <summary>
/// A client that keeps many requests in flight on one connection and matches replies by cookie, so replies that
/// arrive out of order are exercised. Structured replies only.
/// </summary>
internal sealed class PipelinedNbdClient : IAsyncDisposable
{
    private readonly RawNbdClient _raw;
    private readonly SemaphoreSlim _send = new(1, 1);
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<RawNbdClient.Reply>> _pending = new();
    private readonly Task _receiver;
    private long _cookie;

    private PipelinedNbdClient(RawNbdClient raw)
    {
        _raw = raw;
        _receiver = Task.Run(ReceiveAsync);
    }

    public static async Task<PipelinedNbdClient> ConnectAsync(int port, string export)
    {
        var raw = await RawNbdClient.ConnectAsync(port);
        await raw.OpenAsync(export);
        return new PipelinedNbdClient(raw);
    }

    private async Task ReceiveAsync()
    {
        try
        {
            while (true)
            {
                var reply = await _raw.ReadReplyAsync();
                Assert.True(reply.Done, "this server sends one chunk per reply");
                Assert.True(_pending.TryRemove(reply.Cookie, out var waiter), $"reply for unknown cookie {reply.Cookie}");
                waiter.SetResult(reply);
            }
        }
        catch (Exception e)
        {
            foreach (var w in _pending.Values) w.TrySetException(e);
        }
    }

    public async Task<RawNbdClient.Reply> RequestAsync(ushort type, long offset, int length, ushort flags = 0, byte[]? payload = null)
    {
        ulong cookie = (ulong)Interlocked.Increment(ref _cookie) * 0x9E3779B97F4A7C15UL; // odd-looking cookies must echo exactly
        var waiter = new TaskCompletionSource<RawNbdClient.Reply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[cookie] = waiter;
        await _send.WaitAsync();
        try { await _raw.SendRequestAsync(type, (ulong)offset, (uint)length, flags, cookie, payload); }
        finally { _send.Release(); }
        var reply = await waiter.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    public async Task WriteAsync(long offset, byte[] data, bool fua = false)
    {
        var r = await RequestAsync(1, offset, data.Length, fua ? (ushort)1 : (ushort)0, data);
        Assert.Equal(0u, r.Error);
    }

    public async Task<byte[]> ReadAsync(long offset, int length)
    {
        var r = await RequestAsync(0, offset, length);
        Assert.Equal(0u, r.Error);
        Assert.Equal(1, r.Type);
        Assert.Equal(8 + length, r.Payload.Length);
        return r.Payload[8..];
    }

    public async Task ZeroAsync(long offset, int length, bool noHole)
    {
        var r = await RequestAsync(6, offset, length, noHole ? (ushort)2 : (ushort)0);
        Assert.Equal(0u, r.Error);
    }

    public async Task FlushAsync()
    {
        var r = await RequestAsync(3, 0, 0);
        Assert.Equal(0u, r.Error);
    }

    public async ValueTask DisposeAsync()
    {
        await _send.WaitAsync();
        try { await _raw.SendRequestAsync(2, 0, 0); } catch (IOException) { }
        finally { _send.Release(); }
        await _receiver; // the server closes after DISC; the receiver ends with the stream
        await _raw.DisposeAsync();
    }
}
