using System.Diagnostics;

namespace Qed.Nbd.Tests.Support;

/// <summary>Runs the real client tools. A missing tool fails the test with how to install it; nothing is skipped.</summary>
internal static class Tool
{
    private static readonly Dictionary<string, string> Packages = new()
    {
        ["qemu-img"] = "qemu-utils", ["qemu-io"] = "qemu-utils", ["qemu-nbd"] = "qemu-utils",
        ["nbdinfo"] = "libnbd-bin", ["nbdcopy"] = "libnbd-bin", ["fio"] = "fio", ["openssl"] = "openssl",
        ["nbdkit"] = "nbdkit",
    };

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    public static string Find(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/usr/bin").Append("/usr/sbin"))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        Assert.Fail($"'{name}' is not installed: run ./test.sh (it installs the tools) or 'sudo apt-get install -y {Packages.GetValueOrDefault(name, name)}'.");
        return "";
    }

    public static async Task<Result> RunAsync(string name, IEnumerable<string> args, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(Find(name))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // nbdinfo/nbdcopy probe content with file(1); keep the environment predictable.
        psi.Environment["LC_ALL"] = "C";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{name} {string.Join(' ', args)} did not finish in time.\n{await stdout}\n{await stderr}");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs and asserts exit status 0; returns stdout.</summary>
    public static async Task<string> CheckAsync(string name, params string[] args)
    {
        var r = await RunAsync(name, args);
        Assert.True(r.ExitCode == 0, $"{name} {string.Join(' ', args)} failed: {r}");
        return r.Stdout;
    }
}
