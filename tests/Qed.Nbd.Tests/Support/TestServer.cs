using System.Net;

namespace Qed.Nbd.Tests.Support;

/// <summary>An in-process <see cref="NbdServer"/> on an ephemeral loopback port, serving images it opened.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private readonly List<DiskImage> _images;

    private TestServer(NbdServer server, List<DiskImage> images)
    {
        Server = server;
        _images = images;
    }

    public NbdServer Server { get; }

    public int Port => ((IPEndPoint)Server.LocalEndPoint).Port;

    public string Uri(string export = "disk", string scheme = "nbd") => $"{scheme}://127.0.0.1:{Port}/{export}";

    public DiskImage Image => _images[0];

    /// <summary>Serves each (name, path) pair; images are opened with probing unless <paramref name="format"/> is set.</summary>
    public static async Task<TestServer> StartAsync(IEnumerable<(string Name, string Path)> files, bool readOnly = false, ImageFormat? format = null,
        Func<NbdServerOptions, NbdServerOptions>? configure = null, EndPoint? endPoint = null)
    {
        var images = new List<DiskImage>();
        var exports = new List<NbdExport>();
        foreach (var (name, path) in files)
        {
            var image = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = readOnly, Format = format });
            images.Add(image);
            exports.Add(new NbdExport(name, image, $"test export {name}") { ReadOnly = readOnly });
        }
        var options = new NbdServerOptions { Exports = exports };
        if (configure != null) options = configure(options);
        return new TestServer(NbdServer.Start(endPoint ?? new IPEndPoint(IPAddress.Loopback, 0), options), images);
    }

    public static Task<TestServer> StartAsync(string path, bool readOnly = false, ImageFormat? format = null, Func<NbdServerOptions, NbdServerOptions>? configure = null,
        EndPoint? endPoint = null) =>
        StartAsync([("disk", path)], readOnly, format, configure, endPoint);

    public async ValueTask DisposeAsync()
    {
        await Server.StopAsync();
        foreach (var image in _images) await image.DisposeAsync();
    }
}
