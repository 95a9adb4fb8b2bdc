using Qed.Nbd.Tests.Support;

namespace Qed.Nbd.Tests;

/// <summary>
/// 8 clients, each with 4 requests in flight, write, zero and verify random data on one QED image for
/// QED_NBD_SOAK_SECONDS (default 10; the full run is 60). Afterwards qemu-img check must be clean and the
/// image must equal the model byte for byte.
/// </summary>
public sealed class SoakTests : IDisposable
{
    private const int Clients = 8, WorkersPerClient = 4, Block = 16 * 1024;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task EightClientsWriteAndVerify()
    {
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("QED_NBD_SOAK_SECONDS"), out int s) && s > 0 ? s : 10;
        const int size = 64 << 20;
        string qed = _dir["soak.qed"];
        await Tool.CheckAsync("qemu-img", "create", "-f", "qed", qed, $"{size}");
        var model = new byte[size];
        long ops = 0, verifiedBytes = 0;
        var deadline = DateTime.UtcNow.AddSeconds(seconds);

        await using (var server = await TestServer.StartAsync(qed, format: ImageFormat.Qed))
        {
            var clients = new List<PipelinedNbdClient>();
            for (int c = 0; c < Clients; c++) clients.Add(await PipelinedNbdClient.ConnectAsync(server.Port, "disk"));
            var workers = new List<Task>();
            for (int c = 0; c < Clients; c++)
                for (int w = 0; w < WorkersPerClient; w++)
                {
                    int owner = c * WorkersPerClient + w, seed = owner;
                    var client = clients[c];
                    workers.Add(Task.Run(async () =>
                    {
                        // A worker owns every 32nd 16 KiB block, so all workers share clusters and L2 tables but the
                        // model of each block has a single writer and stays exact.
                        var rnd = new Random(seed);
                        int blocks = size / Block / (Clients * WorkersPerClient);
                        while (DateTime.UtcNow < deadline)
                        {
                            long start = ((long)rnd.Next(blocks) * Clients * WorkersPerClient + owner) * Block;
                            int first = rnd.Next(Block), length = rnd.Next(1, Block - first + 1);
                            long offset = start + first;
                            int op = rnd.Next(100);
                            if (op < 55)
                            {
                                var data = new byte[length];
                                rnd.NextBytes(data);
                                await client.WriteAsync(offset, data, fua: op < 3);
                                data.CopyTo(model, offset);
                            }
                            else if (op < 65)
                            {
                                await client.ZeroAsync(offset, length, noHole: op < 60);
                                Array.Clear(model, (int)offset, length);
                            }
                            else if (op < 67)
                            {
                                await client.FlushAsync();
                            }
                            else
                            {
                                var got = await client.ReadAsync(start, Block);
                                if (!got.AsSpan().SequenceEqual(model.AsSpan((int)start, Block)))
                                    Assert.Fail($"block at {start} differs from the model");
                                Interlocked.Add(ref verifiedBytes, Block);
                            }
                            Interlocked.Increment(ref ops);
                        }
                    }));
                }
            await Task.WhenAll(workers);
            foreach (var client in clients) await client.DisposeAsync();
        }
        Assert.True(ops > 1000, $"only {ops} operations in {seconds} s");
        Assert.Contains("No errors were found", await Tool.CheckAsync("qemu-img", "check", qed));
        await File.WriteAllBytesAsync(_dir["model.raw"], model);
        await Tool.CheckAsync("qemu-img", "compare", "-f", "qed", "-F", "raw", qed, _dir["model.raw"]);
        Console.WriteLine($"soak: {ops} operations, {verifiedBytes >> 20} MiB verified in {seconds} s");
    }
}
