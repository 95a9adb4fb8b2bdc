using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>These tests open thousands of sockets and time answers: they run alone so the bounds stay meaningful.</summary>
[CollectionDefinition(nameof(DenialOfServiceTests), DisableParallelization = true)]
public sealed class DenialOfServiceCollection;

/// <summary>
/// Clients that misbehave on purpose (close with replies unread, stop reading, never finish the handshake, arrive by
/// the thousand) must not lock anyone else out: each test has a well-behaved client answered within a bound. All
/// traffic is on loopback.
/// </summary>
[Collection(nameof(DenialOfServiceTests))]
public sealed class DenialOfServiceTests : IAsyncLifetime
{
    private const uint Big = 32 << 20;
    private static readonly TimeSpan Answer = TimeSpan.FromSeconds(5);
    private readonly TempDir _dir = new();
    private string _disk = "";

    public Task InitializeAsync()
    {
        // Sparse: the 32 MiB reads below read holes, which costs the kernel next to nothing.
        _disk = _dir["disk.raw"];
        using (var f = File.Create(_disk)) f.SetLength(128L << 20);
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>Limits of a second or so, so that the tests take seconds (the defaults are 10 s and 30 s).</summary>
    private static Func<NbdServerOptions, NbdServerOptions> Limits(double handshake = 1, double stall = 1) =>
        o => o with { HandshakeLimit = TimeSpan.FromSeconds(handshake), ReplyStallLimit = TimeSpan.FromSeconds(stall) };

    private Task<TestServer> StartAsync(Func<NbdServerOptions, NbdServerOptions>? configure = null, EndPoint? endPoint = null) =>
        TestServer.StartAsync(_disk, format: ImageFormat.Raw, configure: configure ?? Limits(), endPoint: endPoint);

    private static Func<Task<RawNbdClient>> Tcp(TestServer server)
    {
        int port = server.Port;
        return () => RawNbdClient.ConnectAsync(port);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ClientsThatCloseWithRepliesUnreadFreeTheirSlots(bool unix)
    {
        string socket = _dir["nbd.sock"];
        // Default limits: freeing the slot must not wait for any timeout.
        await using var server = await StartAsync(o => o, unix ? new UnixDomainSocketEndPoint(socket) : null);
        Func<Task<RawNbdClient>> connect = unix ? () => RawNbdClient.ConnectUnixAsync(socket) : Tcp(server);
        await LeakAsync(connect);
        await WithinAsync(SessionAsync(connect), Answer, "a new client's session after 16 clients closed with replies unread");
        await EventuallyAsync(() => server.Server.ConnectionCount == 0, Answer, "every connection closed");
    }

    [Fact]
    public async Task ClientsThatStopReadingAreCutAfterTheStallLimit()
    {
        await using var server = await StartAsync();
        var stalled = await StallAsync(Tcp(server));
        try
        {
            await WithinAsync(SessionAsync(Tcp(server)), Answer, "a new client's session while 16 clients stopped reading");
            await EventuallyAsync(() => server.Server.ConnectionCount == 0, Answer, "the stalled connections cut");
        }
        finally
        {
            foreach (var c in stalled) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task StopIsBoundedWhenClientsStopReading()
    {
        // Default limits: a 30 s stall limit, so it is the stop's grace that ends these connections.
        await using var server = await StartAsync(o => o);
        var stalled = await StallAsync(Tcp(server));
        try
        {
            await WithinAsync(server.Server.StopAsync(TimeSpan.FromSeconds(1)), Answer, "StopAsync with a 1 s grace");
            Assert.Equal(0, server.Server.ConnectionCount);
        }
        finally
        {
            foreach (var c in stalled) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task IdleSocketsBeforeTheHandshakeDoNotLockOthersOutAndAreDropped()
    {
        // A 3 s handshake limit: the new client must get in well before the idle ones are dropped.
        await using var server = await StartAsync(Limits(handshake: 3));
        var idle = await IdleAsync(Tcp(server));
        try
        {
            await WithinAsync(SessionAsync(Tcp(server)), TimeSpan.FromSeconds(2), "a new client's session while 16 sockets sit idle before the handshake");
            foreach (var c in idle) Assert.True(await c.IsClosedAsync(TimeSpan.FromSeconds(6)), "an idle socket was not dropped after the handshake limit");
            // The server forgets a connection just after closing its socket.
            await EventuallyAsync(() => server.Server.ConnectionCount == 0, Answer, "the dropped connections forgotten");
        }
        finally
        {
            foreach (var c in idle) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task TwoThousandConnectionsAtOnceAreAllServed()
    {
        await using var server = await StartAsync();
        await WithinAsync(FloodAsync(server.Port), TimeSpan.FromSeconds(90), "2,000 sessions");
    }

    [Fact]
    public async Task SurvivesAllOfItAtOnceWhileAWellBehavedClientIsAnswered()
    {
        // 3 s for the handshake: on two busy cores a flood client can take over a second to answer its greeting.
        await using var server = await StartAsync(Limits(handshake: 3));
        var connect = Tcp(server);
        await using var steady = await PipelinedNbdClient.ConnectAsync(server.Port, "disk");
        using var done = new CancellationTokenSource();
        int answered = 0;
        var probe = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                // An established connection is answered at once; a new one may queue behind the 2,000 in the backlog.
                await WithinAsync(steady.ReadAsync(0, 4096), Answer, "a READ on an established connection");
                await WithinAsync(SessionAsync(connect), TimeSpan.FromSeconds(30), "a new client's session");
                Interlocked.Increment(ref answered);
                await Task.Delay(50);
            }
        });
        var idle = await IdleAsync(connect);
        try
        {
            await WithinAsync(Task.WhenAll(LeakAsync(connect), FloodAsync(server.Port)), TimeSpan.FromSeconds(90), "the leaked-slot pattern and 2,000 sessions");
            var more = Volatile.Read(ref answered) + 3;
            await EventuallyAsync(() => Volatile.Read(ref answered) >= more || probe.IsCompleted, TimeSpan.FromSeconds(30), "three more probe rounds");
            done.Cancel();
            await probe;
            foreach (var c in idle) Assert.True(await c.IsClosedAsync(Answer), "an idle socket was not dropped after the handshake limit");
            await EventuallyAsync(() => server.Server.ConnectionCount == 1, Answer, "every connection but the steady one closed");
        }
        finally
        {
            done.Cancel();
            foreach (var c in idle) await c.DisposeAsync();
        }
    }

    /// <summary>A well-behaved session: handshake, a 4 KiB READ answered, DISC.</summary>
    private static async Task SessionAsync(Func<Task<RawNbdClient>> connect)
    {
        await using var c = await connect();
        await c.OpenAsync("disk");
        await c.SendRequestAsync(0, 4096, 4096, cookie: 42);
        var reply = await c.ReadReplyAsync();
        Assert.Equal(42UL, reply.Cookie);
        Assert.Equal(0u, reply.Error);
        await c.SendRequestAsync(2, 0, 0);
    }

    /// <summary>The pattern: 16 connections each send three 32 MiB READs, never read a reply, and close.</summary>
    private static Task LeakAsync(Func<Task<RawNbdClient>> connect) =>
        Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
        {
            var c = await StallOneAsync(connect);
            await c.DisposeAsync();
        }));

    /// <summary>Like <see cref="LeakAsync"/>, but the sockets stay open: the server's sends back up and stop.</summary>
    private static async Task<RawNbdClient[]> StallAsync(Func<Task<RawNbdClient>> connect) =>
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => StallOneAsync(connect)));

    private static async Task<RawNbdClient> StallOneAsync(Func<Task<RawNbdClient>> connect)
    {
        var c = await connect();
        await c.OpenAsync("disk");
        for (uint k = 0; k < 3; k++) await c.SendRequestAsync(0, k * Big, Big, cookie: k + 1);
        return c;
    }

    /// <summary>16 sockets that each send one byte of the handshake and then nothing.</summary>
    private static async Task<List<RawNbdClient>> IdleAsync(Func<Task<RawNbdClient>> connect)
    {
        var idle = new List<RawNbdClient>();
        for (int i = 0; i < 16; i++)
        {
            var c = await connect();
            await c.WriteAsync([0]);
            idle.Add(c);
        }
        return idle;
    }

    /// <summary>
    /// 2,000 connections opened at once, each then running a session. Each connect must complete within 3 s: a SYN
    /// dropped because the listen backlog is full is only retried after 1 s, 3 s, 7 s..., so a short backlog shows.
    /// </summary>
    private static Task FloodAsync(int port) =>
        Task.WhenAll(Enumerable.Range(0, 2000).Select(_ => Task.Run(async () =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3)))
            {
                try
                {
                    await socket.ConnectAsync(IPAddress.Loopback, port, cts.Token);
                }
                catch (OperationCanceledException)
                {
                    socket.Dispose();
                    Assert.Fail("a connection took over 3 s to be established (the listen backlog overflowed)");
                }
            }
            await SessionAsync(() => Task.FromResult(RawNbdClient.FromSocket(socket)));
        })));

    private static async Task WithinAsync(Task task, TimeSpan bound, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(bound)) != task) Assert.Fail($"{what} took over {bound.TotalSeconds} s");
        await task;
    }

    private static async Task EventuallyAsync(Func<bool> condition, TimeSpan bound, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > bound) Assert.Fail($"not within {bound.TotalSeconds} s: {what}");
            await Task.Delay(20);
        }
    }
}
