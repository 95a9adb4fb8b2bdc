using System.Diagnostics;

namespace Qed.Interop.Tests.Qcow2;

/// <summary>Runs qemu-img / qemu-io for the qcow2 tests; fails (never skips) when they are missing.</summary>
internal static class QemuImg
{
    public static (int Exit, string Output) Run(string tool, params string[] args)
    {
        Process p;
        try
        {
            p = Process.Start(new ProcessStartInfo(tool, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'{tool}' was not found: install QEMU's tools with 'apt-get install qemu-utils' (or run ./test.sh)", e);
        }
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Runs a tool and asserts exit code 0.</summary>
    public static string Ok(string tool, params string[] args)
    {
        var (exit, output) = Run(tool, args);
        Assert.True(exit == 0, $"{tool} {string.Join(' ', args)} exited {exit}: {output}");
        return output;
    }
}

/// <summary>A temporary folder removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("qed-qcow2").FullName;
    public string this[string name] => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
