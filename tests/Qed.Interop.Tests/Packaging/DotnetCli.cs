using System.Diagnostics;
using Qed.Interop.Tests.Support;

namespace Qed.Interop.Tests.Packaging;

/// <summary>
/// Runs <c>dotnet</c> (and the programs it makes) as a user would from a shell: the MSBuild variables of the test
/// run that hosts us are removed, so a nested pack, restore or build starts from the SDK's own defaults.
/// </summary>
public static class DotnetCli
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    /// <summary>The <c>dotnet</c> executable on PATH, or null when there is none.</summary>
    public static string? Path =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => System.IO.Path.Combine(dir, "dotnet")).FirstOrDefault(File.Exists);

    /// <summary>Runs <c>dotnet</c> with <paramref name="args"/> in <paramref name="cwd"/> and asserts exit 0.</summary>
    public static ToolResult Ok(string cwd, IReadOnlyDictionary<string, string> env, params string[] args) =>
        Tool.Ok(Run(Path ?? throw new InvalidOperationException("dotnet is not on PATH"), cwd, env, args));

    /// <summary>Runs any executable with the cleaned environment plus <paramref name="env"/>.</summary>
    public static ToolResult Run(string exe, string cwd, IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo(exe)
        {
            WorkingDirectory = cwd,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        // The test host runs under `dotnet test`, whose MSBuild variables (MSBuildExtensionsPath, MSBUILD_EXE_PATH,
        // MSBuildSDKsPath ...) would point a nested build at the host's MSBuild instead of resolving its own.
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
            info.Environment.Remove(key);
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        info.Environment["DOTNET_GENERATE_ASPNET_CERTIFICATE"] = "false";
        foreach (var (key, value) in env) info.Environment[key] = value;
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {exe}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        string command = $"{System.IO.Path.GetFileName(exe)} {string.Join(' ', args)}";
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{command} did not finish within {Timeout}");
        }
        process.WaitForExit();
        return new ToolResult(command, process.ExitCode, stdout.Result, stderr.Result);
    }
}
