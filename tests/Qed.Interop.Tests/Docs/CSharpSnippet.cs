using System.Diagnostics;
using System.Text.Json;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Qed.Interop.Tests.Docs;

/// <summary>
/// Compiles a <c>csharp</c> block with Roslyn as the program of a new console project that references Qed.Core
/// (top-level statements, the SDK's implicit usings, nullable annotations on, warnings as errors, as in this
/// repository), and runs it as its own process in a scratch folder: a snippet that does not compile, throws or exits
/// non-zero fails.
/// </summary>
public static class CSharpSnippet
{
    /// <summary>The usings a <c>dotnet new console</c> project gets implicitly.</summary>
    private const string ImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    private static readonly string QedCore = typeof(Qed.DiskImage).Assembly.Location;

    /// <summary>Compiles <paramref name="source"/>; returns the assembly, or the diagnostics that stopped it.</summary>
    public static (byte[]? Assembly, IReadOnlyList<string> Errors) Compile(string source, string name)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        // The framework's own assemblies and Qed.Core, nothing else the test process happens to load.
        string frameworkDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var references = Directory.GetFiles(frameworkDir, "*.dll")
            .Where(IsManaged)
            .Append(QedCore)
            .Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create(
            "snippet",
            [CSharpSyntaxTree.ParseText(source, parse, path: name), CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "ImplicitUsings.cs")],
            references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable,
                generalDiagnosticOption: ReportDiagnostic.Error));
        using var pe = new MemoryStream();
        var result = compilation.Emit(pe);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        return (result.Success ? pe.ToArray() : null, errors);
    }

    /// <summary>
    /// Writes the compiled snippet, its runtime config and Qed.Core.dll to <paramref name="cwd"/> and runs it there with
    /// the dotnet host; returns the exit code and everything it printed.
    /// </summary>
    public static (int ExitCode, string Output) Run(byte[] assembly, string cwd)
    {
        string bin = Path.Combine(cwd, ".snippet");
        Directory.CreateDirectory(bin);
        File.WriteAllBytes(Path.Combine(bin, "snippet.dll"), assembly);
        File.Copy(QedCore, Path.Combine(bin, Path.GetFileName(QedCore)));
        var version = Environment.Version;
        File.WriteAllText(Path.Combine(bin, "snippet.runtimeconfig.json"), JsonSerializer.Serialize(new
        {
            runtimeOptions = new
            {
                tfm = $"net{version.Major}.{version.Minor}",
                framework = new { name = "Microsoft.NETCore.App", version = $"{version.Major}.{version.Minor}.0" },
                configProperties = new Dictionary<string, object> { ["System.Globalization.Invariant"] = true },
            },
        }));
        var info = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = cwd,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(bin, "snippet.dll"));
        using var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start the dotnet host");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"The snippet did not finish within 2 minutes (in {cwd})");
        }
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>The dotnet host running these tests (DOTNET_HOST_PATH, set by the SDK), else the one on PATH.</summary>
    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        return Support.Tool.Require("dotnet", "dotnet-sdk-10.0");
    }

    private static bool IsManaged(string path)
    {
        try
        {
            System.Reflection.AssemblyName.GetAssemblyName(path);
            return true;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }
}
