using System.Security.Cryptography;

namespace Qed.Interop.Tests.Support;

/// <summary>A scratch folder for one test, deleted on dispose. Commands run with it as their working directory.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Path = Directory.CreateTempSubdirectory("qed-interop-").FullName;

    public string Path { get; }

    /// <summary>The absolute path of a file in the folder.</summary>
    public string this[string name] => System.IO.Path.Combine(Path, name);

    public ToolResult Qed(params string[] args) => Tool.Qed(Path, args);

    public ToolResult QemuImg(params string[] args) => Tool.QemuImg(Path, args);

    public ToolResult QemuIo(params string[] args) => Tool.QemuIo(Path, args);

    public byte[] Bytes(string name) => File.ReadAllBytes(this[name]);

    public string Hash(string name) => System.Convert.ToHexString(SHA256.HashData(Bytes(name)));

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
