using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Qed.Interop.Tests.Docs;
using Qed.Interop.Tests.Support;
using Xunit.Abstractions;

namespace Qed.Interop.Tests.Packaging;

/// <summary>
/// The packages as a .NET user gets them: <c>dotnet pack</c> of Qed.Core, Qed.Nbd and Qed.Cli into a local feed, a
/// fresh <c>dotnet new console</c> app that installs the two libraries from it and runs <see cref="ConsumerProgram"/>
/// (its image then checked by qemu-img), and the qed tool installed with <c>dotnet tool install --tool-path</c>,
/// whose create and info match qemu-img's. The app restores into its own packages folder, so a package cached by an
/// earlier run with the same version can never stand in for the one just packed.
/// </summary>
public sealed class PackagingTests(ITestOutputHelper output)
{
    private static readonly string[] Packages = ["Qed.Core", "Qed.Nbd", "Qed.Cli"];

    [DotnetFact]
    public void PackagesInstallIntoAFreshAppAndTheToolRuns()
    {
        string root = MarkdownBlocks.RepositoryRoot;
        using var dir = new TempDir();
        string feed = Directory.CreateDirectory(dir["feed"]).FullName;
        var clock = Stopwatch.StartNew();
        var none = new Dictionary<string, string>();

        foreach (string package in Packages)
            DotnetCli.Ok(root, none, "pack", Path.Combine("src", package), "-c", "Release", "-o", feed, "-nologo", "-v", "q", "--disable-build-servers");
        Log(clock, "packed");
        string version = CheckPackages(root, feed);

        // The fresh app, as a user makes it, with NuGet told where the packages are: the feed for Qed.*, this
        // machine's own sources for anything else. Its own packages folder keeps the user's cache out of it.
        string app = dir["app"];
        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = dir["nuget-packages"] };
        DotnetCli.Ok(dir.Path, env, "new", "console", "-o", app, "--no-restore");
        string config = Path.Combine(app, "nuget.config");
        File.WriteAllText(config, NuGetConfig(feed, MachineSources(dir.Path)));
        foreach (string package in new[] { "Qed.Core", "Qed.Nbd" })
            DotnetCli.Ok(app, env, "add", "package", package, "--version", version);
        File.Copy(Path.Combine(root, "tests", "Qed.Interop.Tests", "Packaging", "ConsumerProgram.cs"), Path.Combine(app, "ConsumerProgram.cs"));
        File.WriteAllText(Path.Combine(app, "Program.cs"), "return await Qed.Interop.Tests.Packaging.ConsumerProgram.RunAsync(args);\n");
        Log(clock, "app made");
        var run = DotnetCli.Ok(app, env, "run", "-c", "Release", "--disable-build-servers", "--", dir["lib.qed"]);
        Assert.Contains("ok: 70000 bytes written and read back", run.StdOut);
        Assert.Contains($"Qed.Nbd {version}.0 loaded", run.StdOut);
        // The assemblies the app ran are the packed ones, not project outputs.
        string packed = Path.Combine(dir["nuget-packages"], "qed.core", version, "lib", "net10.0", "Qed.Core.dll");
        Assert.True(File.Exists(packed), $"restore did not take Qed.Core {version} from the feed into {packed}");
        var check = Tool.Ok(dir.QemuImg("check", "lib.qed"));
        Assert.Contains("No errors were found on the image.", check.StdOut);
        Log(clock, "app ran");

        RunDocExamples(app, env, dir);
        Log(clock, "docs' examples ran");

        string tools = dir["tools"];
        DotnetCli.Ok(dir.Path, env, "tool", "install", "Qed.Cli", "--version", version, "--tool-path", tools, "--configfile", config);
        string qed = Path.Combine(tools, "qed");
        var created = Tool.Ok(DotnetCli.Run(qed, dir.Path, env, "create", "-f", "qed", "x.qed", "1M"));
        var reference = Tool.Ok(dir.QemuImg("create", "-f", "qed", "y.qed", "1M"));
        Assert.Equal(reference.StdOut.Replace("y.qed", "x.qed", StringComparison.Ordinal), created.StdOut);
        Assert.True(dir.Bytes("x.qed").AsSpan().SequenceEqual(dir.Bytes("y.qed")), "the tool's image differs from qemu-img's");
        var info = Tool.Ok(DotnetCli.Run(qed, dir.Path, env, "info", "x.qed"));
        Assert.Equal(Tool.Ok(dir.QemuImg("info", "x.qed")).StdOut, info.StdOut);
        Assert.Contains("virtual size: 1 MiB (1048576 bytes)", info.StdOut);
        Log(clock, "tool ran");
    }

    /// <summary>
    /// Every C# example of README.md and docs/*.md, run as the fresh app's Program.cs against the packages (the docs
    /// tests run the same examples against the project build): each session in its own folder, its setup commands and
    /// shell blocks run as the docs tests run them, then every image it left is checked by <c>qemu-img check</c>, except
    /// those whose name says the example corrupted it on purpose (<c>corrupt</c> in the name).
    /// </summary>
    private void RunDocExamples(string app, Dictionary<string, string> env, TempDir dir)
    {
        var sessions = DocExamplesTests.SessionsOf(MarkdownBlocks.All(MarkdownBlocks.RepositoryRoot))
            .Where(s => s.Any(b => b.Language == "csharp")).ToList();
        Assert.Contains(sessions, s => s[0].File == "README.md");
        Assert.Contains(sessions, s => s[0].File == "docs/library.md");
        string program = Path.Combine(app, "Program.cs");
        using var shell = new Shell();
        int n = 0;
        foreach (var session in sessions)
        {
            string cwd = Directory.CreateDirectory(dir[$"example-{n++}"]).FullName;
            foreach (var block in session)
            {
                if (block.Language != "csharp")
                {
                    Assert.Empty(DocExamplesTests.RunBlock(block, shell, cwd));
                    continue;
                }
                foreach (string command in block.Setup)
                {
                    var (exit, text) = shell.Run(cwd, command, exitOnError: true);
                    Assert.True(exit == 0, $"{block.Where}: setup '{command}' exited {exit}:\n{text}");
                }
                File.WriteAllText(program, block.Text + "\n");
                var run = DotnetCli.Run(DotnetCli.Path!, cwd, env, "run", "--project", app, "-c", "Release", "--disable-build-servers");
                Assert.True(run.ExitCode == 0, $"{block.Where}, run from the packages, exited {run.ExitCode}:\n{run.StdOut}{run.StdErr}");
            }
            foreach (string image in Directory.GetFiles(cwd).Where(f => f.EndsWith(".qed", StringComparison.Ordinal) || f.EndsWith(".qcow2", StringComparison.Ordinal)))
            {
                if (Path.GetFileName(image).Contains("corrupt", StringComparison.Ordinal)) continue;
                var check = Tool.QemuImg(cwd, "check", "-U", Path.GetFileName(image));
                Assert.True(check.ExitCode == 0, $"{session[0].Where}: qemu-img check {Path.GetFileName(image)} exited {check.ExitCode}:\n{check.StdOut}{check.StdErr}");
            }
            output.WriteLine($"{session[0].Where}: ran from the packages");
        }
    }

    /// <summary>
    /// Each package and its symbols package is in the feed with the metadata of src/Directory.Build.props: one
    /// version, licence, readme, description, docs, the commit packed from. Returns the version.
    /// </summary>
    private static string CheckPackages(string root, string feed)
    {
        string? version = null;
        var git = DotnetCli.Run("git", root, new Dictionary<string, string>(), "rev-parse", "HEAD");
        foreach (string package in Packages)
        {
            string nupkg = Assert.Single(Directory.GetFiles(feed, $"{package}.*.nupkg"));
            string thisVersion = Path.GetFileNameWithoutExtension(nupkg)[(package.Length + 1)..];
            Assert.Equal(version ?? thisVersion, thisVersion);
            version = thisVersion;
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"no symbols package beside {nupkg}");
            using var zip = ZipFile.OpenRead(nupkg);
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("README.md", entries);
            Assert.Contains("LICENSE", entries);
            string docs = package == "Qed.Cli" ? $"tools/net10.0/any/Qed.Core.xml" : $"lib/net10.0/{package}.xml";
            Assert.Contains(docs, entries);
            using var nuspecStream = zip.GetEntry($"{package}.nuspec")!.Open();
            var metadata = XDocument.Load(nuspecStream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
            string? Value(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value;
            Assert.Equal(package, Value("id"));
            Assert.Equal("MIT", Value("license"));
            Assert.Equal("README.md", Value("readme"));
            Assert.Equal("the qed authors", Value("authors"));
            Assert.NotEqual("Package Description", Value("description"));
            Assert.False(string.IsNullOrWhiteSpace(Value("tags")), $"{package} has no tags");
            var repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
            Assert.Equal("git", repository.Attribute("type")?.Value);
            // The commit packed from; a build outside a checkout has none, and says so by leaving it out.
            Assert.Equal(git.ExitCode == 0 ? git.StdOut.Trim() : null, repository.Attribute("commit")?.Value);
            if (package == "Qed.Cli")
                Assert.Contains("DotnetTool", metadata.Descendants().Where(e => e.Name.LocalName == "packageType").Select(e => e.Attribute("name")?.Value));
        }
        return version!;
    }

    /// <summary>The enabled package sources of this machine, as <c>dotnet nuget list source</c> reports them.</summary>
    private static List<string> MachineSources(string cwd)
    {
        var list = DotnetCli.Ok(cwd, new Dictionary<string, string>(), "nuget", "list", "source", "--format", "short");
        return list.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(line => line.StartsWith("E ", StringComparison.Ordinal)).Select(line => line[2..].Trim()).ToList();
    }

    /// <summary>
    /// A nuget.config with the feed and the machine's sources; source mapping sends Qed.* to the feed only, so a
    /// package of the same name on a public source can never be taken instead.
    /// </summary>
    private static string NuGetConfig(string feed, List<string> sources)
    {
        var add = new XElement("packageSources", new XElement("clear"), new XElement("add", new XAttribute("key", "qed-feed"), new XAttribute("value", feed)));
        var mapping = new XElement("packageSourceMapping",
            new XElement("packageSource", new XAttribute("key", "qed-feed"), new XElement("package", new XAttribute("pattern", "Qed.*"))));
        for (int i = 0; i < sources.Count; i++)
        {
            add.Add(new XElement("add", new XAttribute("key", $"machine-{i}"), new XAttribute("value", sources[i])));
            mapping.Add(new XElement("packageSource", new XAttribute("key", $"machine-{i}"), new XElement("package", new XAttribute("pattern", "*"))));
        }
        return new XDocument(new XElement("configuration", add, mapping)).ToString();
    }

    private void Log(Stopwatch clock, string step) => output.WriteLine($"{clock.Elapsed.TotalSeconds,6:F1} s  {step}");
}
