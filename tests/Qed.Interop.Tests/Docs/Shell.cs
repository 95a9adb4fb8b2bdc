using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Docs;

/// <summary>
/// Runs documentation commands with bash in a scratch folder, with the <c>qed</c> under test first on PATH (through a
/// one-line wrapper, so the folder holds nothing else of the build). Standard error goes to the same pipe as standard
/// output, so the text comes out in the order a terminal shows it.
/// </summary>
public sealed class Shell : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);
    private readonly TempDir _bin = new();

    public Shell()
    {
        string wrapper = _bin["qed"];
        File.WriteAllText(wrapper, $"#!/bin/sh\nexec '{Tool.QedPath.Replace("'", "'\\''")}' \"$@\"\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>
    /// Runs <paramref name="script"/> with <c>bash -c</c> in <paramref name="cwd"/>. <c>$?</c> starts as
    /// <paramref name="previousExit"/>, so <c>echo $?</c> in a transcript reports the command before it.
    /// </summary>
    public (int ExitCode, string Output) Run(string cwd, string script, int previousExit = 0, bool exitOnError = false)
    {
        var info = new ProcessStartInfo("/bin/bash")
        {
            WorkingDirectory = cwd,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (exitOnError) info.ArgumentList.Add("-eo");
        if (exitOnError) info.ArgumentList.Add("pipefail");
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"exec 2>&1\n(exit {previousExit})\n{script}");
        info.Environment["PATH"] = _bin.Path + ":" + Environment.GetEnvironmentVariable("PATH");
        info.Environment["LC_ALL"] = "C";
        using var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start /bin/bash");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"'{script}' did not finish within {Timeout} (in {cwd})");
        }
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    public void Dispose() => _bin.Dispose();
}
