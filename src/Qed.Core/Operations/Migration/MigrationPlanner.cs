using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Operations.Migration;

/// <summary>
/// Builds a <see cref="MigrationPlan"/>: finds QED images by header, follows each backing chain (reading headers only,
/// with no locks: nothing is opened for I/O while planning), places targets and orders the steps bottom-up.
/// </summary>
internal sealed class MigrationPlanner
{
    /// <summary>A file met while planning: an image found, or a backing file one of them needs.</summary>
    private sealed class Node(string path, string format)
    {
        public string Path { get; } = path;
        public string Format { get; } = format;
        public Node? Backing { get; set; }
        /// <summary>The backing name as the image records it (for placing a backing file found outside the sources).</summary>
        public string? BackingName { get; set; }
        public string? Problem { get; set; }
        public long VirtualSize { get; set; }
        public bool Corrupt { get; set; }
        /// <summary>The source folder the image was found under, or null for a backing file reached only by name.</summary>
        public string? Root { get; set; }
        public List<string> Chain { get; } = [];
        public string? Target { get; set; }
        public MigrationStep? Step { get; set; }
        public bool Resolved { get; set; }
    }

    private readonly string _targetDir;
    private readonly MigrationOptions _options;
    private readonly string _reportPath;
    private readonly Dictionary<string, Node> _nodes = new(StringComparer.Ordinal);
    private readonly List<Node> _found = [];
    private readonly List<string> _roots = [];

    private MigrationPlanner(string targetDir, MigrationOptions options)
    {
        _targetDir = targetDir;
        _options = options;
        _reportPath = Path.GetFullPath(options.ReportPath ?? Path.Combine(targetDir, MigrationOptions.DefaultReportName));
    }

    public static async Task<MigrationPlan> PlanAsync(IReadOnlyList<string> sources, string targetDir, MigrationOptions options, CancellationToken ct)
    {
        if (sources.Count == 0) throw new ArgumentException("No source images or folders given", nameof(sources));
        if (options.TargetFormat == ImageFormat.Qcow2) await ValidateQcow2Async(options.Qcow2, ct).ConfigureAwait(false);
        var planner = new MigrationPlanner(targetDir, options);
        foreach (string source in sources) await planner.FindAsync(source, ct).ConfigureAwait(false);
        foreach (var node in planner._found) await planner.ResolveAsync(node, [], ct).ConfigureAwait(false);
        return new MigrationPlan(targetDir, options, planner.Order());
    }

    /// <summary>The qcow2 settings made into a small image in memory: a combination qcow2 cannot take fails before anything is written.</summary>
    private static async Task ValidateQcow2Async(Qcow2CreateOptions qcow2, CancellationToken ct)
    {
        try
        {
            await Qcow2Image.CreateAsync(new MemoryStorage(), qcow2 with { Size = 1 << 20, BackingFile = null, BackingFormat = null, BackingCheck = BackingFileCheck.Open,
                Preallocation = Qcow2Preallocation.Off }, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or ImageFormatException)
        {
            throw new ArgumentException($"Invalid qcow2 options: {e.Message}", e);
        }
    }

    private bool InsideTarget(string path) => IsUnder(path, _targetDir);

    private static bool IsUnder(string path, string folder) =>
        path.StartsWith(folder.EndsWith('/') ? folder : folder + "/", StringComparison.Ordinal);

    /// <summary>Adds the QED images a source names: the file itself, or every QED file under the folder.</summary>
    private async Task FindAsync(string source, CancellationToken ct)
    {
        string full = Path.GetFullPath(source);
        if (Directory.Exists(full))
        {
            if (full == _targetDir || InsideTarget(full))
                throw new ArgumentException($"The source folder '{source}' is inside the target folder");
            _roots.Add(full);
            var enumeration = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true };
            // The target folder (when it lies inside a source) holds results, not sources.
            foreach (string file in Directory.EnumerateFiles(full, "*", enumeration).Order(StringComparer.Ordinal))
            {
                if (InsideTarget(file) || file == _reportPath) continue;
                string? format = await TryProbeAsync(file, ct).ConfigureAwait(false);
                if (format == "qed") Add(file, full);
            }
            return;
        }
        if (!File.Exists(full)) throw new FileNotFoundException($"Could not open '{source}': No such file or directory", source);
        if (InsideTarget(full)) throw new ArgumentException($"The source '{source}' is inside the target folder");
        string probed = await TryProbeAsync(full, ct).ConfigureAwait(false)
            ?? throw new ArgumentException($"Could not read '{source}'");
        if (probed != "qed") throw new ArgumentException($"'{source}' is not a QED image (its format is {probed})");
        string root = Path.GetDirectoryName(full)!;
        if (!_roots.Contains(root)) _roots.Add(root);
        Add(full, root);
    }

    private void Add(string file, string root)
    {
        string key = ImageOpener.Canonical(file);
        if (_nodes.ContainsKey(key)) return; // named twice (a file and its folder, or a link)
        var node = new Node(file, "qed") { Root = root };
        _nodes[key] = node;
        _found.Add(node);
    }

    /// <summary>The file's format by QEMU's probe, or null when it cannot be read (a FIFO, no permission).</summary>
    private static async Task<string?> TryProbeAsync(string path, CancellationToken ct)
    {
        try
        {
            using var file = FileStorage.Open(path, writable: false, locking: FileLockMode.None);
            return (await DiskImage.ProbeFormatAsync(file, ct).ConfigureAwait(false)).Name();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Reads the node's header for its backing file, and resolves that (recursively); problems land on the node.</summary>
    private async Task ResolveAsync(Node node, List<Node> visiting, CancellationToken ct)
    {
        if (node.Resolved) return;
        if (visiting.Contains(node))
        {
            node.Problem = $"its backing chain loops back to '{node.Path}'";
            node.Corrupt = true;
            return;
        }
        visiting.Add(node);
        try
        {
            node.Chain.Add(node.Path);
            (string? name, string? format) backing;
            try
            {
                backing = await ReadBackingAsync(node, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ImageFormatException or IOException or NotSupportedException or UnauthorizedAccessException)
            {
                node.Problem = e.Message;
                node.Corrupt = e is ImageFormatException;
                return;
            }
            if (backing.name is null) return;
            node.BackingName = backing.name;
            if (ImageName.IsSpecial(backing.name))
            {
                node.Problem = $"its backing file name '{backing.name}' is not a plain file name";
                return;
            }
            string path = Path.GetFullPath(ImageName.ResolveBacking(node.Path, backing.name));
            if (!File.Exists(path))
            {
                node.Problem = $"its backing file '{backing.name}' ({path}) does not exist";
                return;
            }
            string format = backing.format ?? await TryProbeAsync(path, ct).ConfigureAwait(false) ?? "raw";
            string key = ImageOpener.Canonical(path);
            if (!_nodes.TryGetValue(key, out var below))
            {
                below = new Node(path, format) { Root = _roots.FirstOrDefault(r => IsUnder(path, r)) };
                _nodes[key] = below;
            }
            node.Backing = below;
            await ResolveAsync(below, visiting, ct).ConfigureAwait(false);
            node.Chain.AddRange(below.Chain);
            if (below.Problem != null && node.Problem is null)
                node.Problem = $"its backing file '{below.Path}' cannot be read: {below.Problem}";
        }
        finally
        {
            visiting.Remove(node);
            node.Resolved = true;
        }
    }

    /// <summary>The backing name the image records and the format it forces (QED NO_PROBE: raw), or nulls.</summary>
    private static async Task<(string? Name, string? Format)> ReadBackingAsync(Node node, CancellationToken ct)
    {
        switch (node.Format)
        {
            case "qed":
            {
                using var file = FileStorage.Open(node.Path, writable: false, locking: FileLockMode.None);
                var bytes = new byte[QedHeader.Size];
                await file.ReadAsync(0, bytes, ct).ConfigureAwait(false);
                var header = QedHeader.Parse(bytes);
                header.Validate(file.Length);
                node.VirtualSize = (long)header.ImageSize;
                if (!header.HasBackingFile) return (null, null);
                var nameBytes = new byte[header.BackingFilenameSize];
                await file.ReadAsync(header.BackingFilenameOffset, nameBytes, ct).ConfigureAwait(false);
                int nul = Array.IndexOf(nameBytes, (byte)0); // QEMU reads the name as a C string
                string name = System.Text.Encoding.UTF8.GetString(nameBytes, 0, nul < 0 ? nameBytes.Length : nul);
                if (name.Length == 0) return (null, null);
                return (name, (header.Features & QedFeatures.BackingFormatNoProbe) != 0 ? "raw" : null);
            }
            case "qcow2":
            {
                await using var image = await DiskImage.OpenAsync(node.Path,
                    new ImageOpenOptions { Format = ImageFormat.Qcow2, ReadOnly = true, NoBacking = true, Locking = false }, ct).ConfigureAwait(false);
                var qcow2 = (Qcow2Image)image;
                node.VirtualSize = qcow2.Size;
                return (qcow2.BackingFilename, qcow2.BackingFormatName);
            }
            default:
                node.VirtualSize = new FileInfo(node.Path).Length;
                return (null, null);
        }
    }

    /// <summary>The steps bottom-up, targets placed and collisions found.</summary>
    private List<MigrationStep> Order()
    {
        var ordered = new List<Node>();
        var seen = new HashSet<Node>();
        void Visit(Node node, bool needed)
        {
            if (!seen.Add(node)) return;
            if (_options.KeepsChains && node.Backing != null) Visit(node.Backing, true);
            if (needed) ordered.Add(node);
        }
        foreach (var node in _found) Visit(node, true);

        // Targets: under a source folder, the same relative path; a backing file reached only by name, where its
        // overlay's target names it (when that lies in the target folder), else in "backing-files".
        var targets = new Dictionary<string, Node>(StringComparer.Ordinal);
        foreach (var node in Enumerable.Reverse(ordered)) Place(node, ordered);
        var steps = new List<MigrationStep>();
        foreach (var node in ordered)
        {
            string? problem = node.Problem;
            if (problem is null && targets.TryGetValue(node.Target!, out var other))
                problem = $"its target '{node.Target}' is also the target of '{other.Path}'";
            else targets.TryAdd(node.Target!, node);
            var step = new MigrationStep
            {
                Source = node.Path,
                SourceFormat = FormatOf(node),
                SourceChain = node.Chain,
                Target = node.Target!,
                TargetFormat = node.Format == "qed" ? _options.TargetFormat : FormatOf(node),
                VirtualSize = node.VirtualSize,
                Backing = _options.KeepsChains ? node.Backing?.Step : null,
                BroughtAlong = node.Format != "qed",
                Problem = problem,
                Corrupt = node.Corrupt,
            };
            node.Step = step;
            steps.Add(step);
        }
        return steps;
    }

    private void Place(Node node, List<Node> ordered)
    {
        if (node.Target != null) return;
        string Rename(string path) => node.Format == "qed" ? Path.ChangeExtension(path, _options.TargetExtension) : path;
        if (node.Root != null)
        {
            node.Target = Rename(Path.Combine(_targetDir, Path.GetRelativePath(node.Root, node.Path)));
            return;
        }
        // Reached only as a backing file: overlays are placed first (this runs top-down).
        var overlay = ordered.FirstOrDefault(n => n.Backing == node && n.Target != null);
        if (overlay != null && !Path.IsPathRooted(overlay.BackingName!))
        {
            string beside = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(overlay.Target!)!, overlay.BackingName!));
            if (InsideTarget(beside))
            {
                node.Target = Rename(beside);
                return;
            }
        }
        node.Target = Rename(Path.Combine(_targetDir, "backing-files", Path.GetFileName(node.Path)));
    }

    /// <summary>A node's probed format (the probe only ever names qed, qcow2 or raw).</summary>
    private static ImageFormat FormatOf(Node node) =>
        ImageFormatNames.TryParse(node.Format, out var format) ? format
            : throw new InvalidOperationException($"'{node.Path}' was probed as '{node.Format}', which is no ImageFormat");
}
