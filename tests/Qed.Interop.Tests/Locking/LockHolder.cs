using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Locking;

/// <summary>
/// A process that keeps an image open in the background (qemu-io sleeping, qemu-nbd or qed serve listening) until
/// disposed, when it is killed. Construction returns once the holder's locks on the image show in /proc/locks, so a
/// test's second opener really meets them; a holder that does not get there within 20 s fails the test.
/// </summary>
public sealed class LockHolder : IDisposable
{
    private readonly Process _process;

    private LockHolder(Process process) => _process = process;

    /// <summary>
    /// Starts <paramref name="exe"/> and waits until the file <paramref name="image"/> has OFD locks on it (and, with
    /// <paramref name="readyLine"/>, until the process prints a line starting so: a server locks the whole chain
    /// before it listens).
    /// </summary>
    public static LockHolder Start(TempDir dir, string image, string exe, string? readyLine, params string[] args)
    {
        var info = new ProcessStartInfo(exe)
        {
            WorkingDirectory = dir.Path,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {exe}");
        var holder = new LockHolder(process);
        string inode = Inode(dir[image]);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!File.ReadAllText("/proc/locks").Contains($":{inode} ", StringComparison.Ordinal))
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                string err = process.HasExited ? process.StandardError.ReadToEnd() : "(still running)";
                holder.Dispose();
                Assert.Fail($"{Path.GetFileName(exe)} {string.Join(' ', args)} did not lock {image}: {err}");
            }
            Thread.Sleep(20);
        }
        if (readyLine != null)
        {
            var line = process.StandardOutput.ReadLineAsync();
            if (!line.Wait(TimeSpan.FromSeconds(20)) || line.Result?.StartsWith(readyLine, StringComparison.Ordinal) != true)
            {
                holder.Dispose();
                Assert.Fail($"{Path.GetFileName(exe)} {string.Join(' ', args)} did not say '{readyLine}'");
            }
        }
        return holder;
    }

    /// <summary>qemu-io with the image open read-write (or as <paramref name="options"/> say), sleeping.</summary>
    public static LockHolder QemuIo(TempDir dir, string image, params string[] options) =>
        Start(dir, image, Tool.Require("qemu-io", "qemu-utils"), null, [.. options, "-c", "sleep 60000", image]);

    /// <summary>qemu-nbd serving the image on a Unix socket in the folder.</summary>
    public static LockHolder QemuNbd(TempDir dir, string image, params string[] options) =>
        Start(dir, image, Tool.Require("qemu-nbd", "qemu-utils"), null, [.. options, "-k", dir["nbd.sock"], "-f", "qed", image]);

    /// <summary>qed serve of the image on a Unix socket in the folder.</summary>
    public static LockHolder QedServe(TempDir dir, string image, params string[] options) =>
        Start(dir, image, Tool.QedPath, "Listening on ", ["serve", .. options, "-k", dir["qed.sock"], image]);

    /// <summary>The inode number of a file, as /proc/locks prints it.</summary>
    public static string Inode(string path)
    {
        var stat = Tool.Run("/usr/bin/stat", "/", "-c", "%i", path);
        Assert.True(stat.ExitCode == 0, stat.ToString());
        return stat.StdOut.Trim();
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
