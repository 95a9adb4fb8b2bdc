using System.Diagnostics;

namespace Qed.Interop.Tests.Check;

/// <summary>Runs the real tools (qemu-img, qemu-io) and our own <c>qed</c> CLI, capturing output and exit status.</summary>
internal static class Tools
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs a tool found on PATH; fails with the way to install it when it is missing.</summary>
    public static Result Run(string tool, string workDir, params string[] args)
    {
        string? path = Find(tool) ?? throw new InvalidOperationException(
            $"'{tool}' is not installed: run ./test.sh (it installs it) or 'sudo apt-get install qemu-utils'");
        return Start(path, workDir, args);
    }

    /// <summary>Runs our <c>qed</c> CLI from the build output of src/Qed.Cli (same configuration as this test).</summary>
    public static Result RunQed(string workDir, params string[] args) => Start("dotnet", workDir, [QedDll, .. args]);

    private static string QedDll
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            string configuration = dir.Parent?.Name ?? "Debug"; // .../bin/<Configuration>/net10.0/
            while (dir != null && !File.Exists(Path.Combine(dir.FullName, "Qed.slnx"))) dir = dir.Parent;
            if (dir is null) throw new InvalidOperationException("Cannot find Qed.slnx above the test's folder");
            string dll = Path.Combine(dir.FullName, "src", "Qed.Cli", "bin", configuration, "net10.0", "qed.dll");
            if (!File.Exists(dll))
                throw new InvalidOperationException($"{dll} is missing: build the solution first ('dotnet build Qed.slnx -c {configuration}', or ./test.sh)");
            return dll;
        }
    }

    private static string? Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    private static Result Start(string file, string workDir, string[] args)
    {
        var info = new ProcessStartInfo(file, args)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 120 s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs a tool and fails the test unless it exits with 0.</summary>
    public static Result Ok(string tool, string workDir, params string[] args)
    {
        var r = Run(tool, workDir, args);
        if (r.ExitCode != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed ({r.ExitCode}): {r.Stderr}{r.Stdout}");
        return r;
    }
}
