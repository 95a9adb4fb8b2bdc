using System.Diagnostics;
using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>A temporary folder of files for storage tests, removed on dispose, and what the host says of a file.</summary>
internal sealed class ScratchFiles : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-storage").FullName;

    /// <summary>The path of <paramref name="name"/> in the folder.</summary>
    public string this[string name] => Path.Combine(_dir, name);

    /// <summary>Creates <paramref name="name"/>, <paramref name="length"/> bytes long, with data only in its first 64 KiB (the rest a hole).</summary>
    public string Sparse(string name, long length = 4 << 20)
    {
        string path = this[name];
        using (var file = File.Create(path))
        {
            file.Write(new byte[64 * 1024].Select((_, i) => (byte)(i | 1)).ToArray());
            file.SetLength(length);
        }
        return path;
    }

    /// <summary>Opens <paramref name="name"/> (made sparse if absent) writable with <paramref name="cache"/>.</summary>
    public FileStorage Open(string name, CacheMode cache = CacheMode.WriteBack)
    {
        string path = this[name];
        if (!File.Exists(path)) Sparse(name);
        return FileStorage.Open(path, writable: true, cache);
    }

    /// <summary>The bytes the host has allocated to a file (st_blocks × block size), counting reserved space, as stat shows.</summary>
    public static long BlocksOf(string path)
    {
        var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true })!;
        var fields = stat.StandardOutput.ReadToEnd().Split(' ');
        stat.WaitForExit();
        return long.Parse(fields[0]) * long.Parse(fields[1]);
    }

    public void Dispose() => Directory.Delete(_dir, true);
}
