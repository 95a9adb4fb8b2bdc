using System.Diagnostics;

namespace Qed.Interop.Tests.Support;

/// <summary>What a finished process said.</summary>
public sealed record ToolResult(string Command, int ExitCode, string StdOut, string StdErr)
{
    /// <summary>Everything, for assertion messages.</summary>
    public override string ToString() => $"$ {Command}\nexit {ExitCode}\nstdout:\n{StdOut}\nstderr:\n{StdErr}";
}

/// <summary>
/// Runs the real tools (qemu-img, qemu-io) and our own <c>qed</c> executable as processes. A missing tool fails the
/// test with a message saying how to install it; nothing is skipped.
/// </summary>
public static class Tool
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// The <c>qed</c> executable under test: <c>QED_EXE</c> when set (test.sh points it at the published native
    /// build, the one users run), else the JIT build next to the tests (the CLI project is referenced).
    /// </summary>
    public static string QedPath
    {
        get
        {
            string path = Environment.GetEnvironmentVariable("QED_EXE") is { Length: > 0 } exe ? exe : Path.Combine(AppContext.BaseDirectory, "qed");
            if (!File.Exists(path)) Assert.Fail($"The qed executable is missing at {path}: build the solution (dotnet build Qed.slnx) or fix QED_EXE");
            return path;
        }
    }

    public static ToolResult Qed(string cwd, params string[] args) => Run(QedPath, cwd, args);

    public static ToolResult QemuImg(string cwd, params string[] args) => Run(Require("qemu-img", "qemu-utils"), cwd, args);

    public static ToolResult QemuIo(string cwd, params string[] args) => Run(Require("qemu-io", "qemu-utils"), cwd, args);

    /// <summary>Runs and asserts exit 0.</summary>
    public static ToolResult Ok(ToolResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        return result;
    }

    /// <summary>Finds a tool on PATH or fails saying which Debian package provides it.</summary>
    public static string Require(string name, string package)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        Assert.Fail($"{name} is not installed: run 'sudo apt-get install -y {package}' (./test.sh installs it)");
        return name;
    }

    public static ToolResult Run(string exe, string cwd, params string[] args)
    {
        var info = new ProcessStartInfo(exe)
        {
            WorkingDirectory = cwd,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {exe}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{Path.GetFileName(exe)} {string.Join(' ', args)} did not finish within {Timeout}");
        }
        process.WaitForExit();
        return new ToolResult($"{Path.GetFileName(exe)} {string.Join(' ', args)}", process.ExitCode, stdout.Result, stderr.Result);
    }
}
