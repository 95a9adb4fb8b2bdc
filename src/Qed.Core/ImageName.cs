using System.Text;
using System.Text.Json;

namespace Qed;

/// <summary>
/// One node of an image name as QEMU's block layer reads it: a format driver (<c>qed</c>, <c>raw</c>, <c>qcow2</c>)
/// over a child, or a protocol node (<c>file</c> with a <see cref="Filename"/>, <c>blkdebug</c> over an image with
/// injected errors). Built from <c>json:{...}</c> names, <c>file:</c> prefixes and <c>--image-opts</c> option strings.
/// </summary>
/// <param name="Driver">The node's driver: a format name, <c>file</c> or <c>blkdebug</c>.</param>
/// <param name="Filename">For a <c>file</c> node, the host file; else null.</param>
/// <param name="Child">The node under a format or blkdebug node (its <c>file</c> or <c>image</c>); else null.</param>
/// <param name="Errors">blkdebug's <c>inject-error</c> rules; empty for other drivers.</param>
internal sealed record ImageName(string Driver, string? Filename, ImageName? Child, IReadOnlyList<InjectedError> Errors)
{
    /// <summary>A quorum node's children; empty for other drivers.</summary>
    public IReadOnlyList<ImageName> Children { get; init; } = [];

    /// <summary>A quorum node's <c>vote-threshold</c>.</summary>
    public int VoteThreshold { get; init; }

    /// <summary>
    /// False when the image's folder cannot be told (a quorum: its children need not share one), so that a relative
    /// backing name has no actual path (qemu-img info: "cannot determine actual path").
    /// </summary>
    public static bool HasFolder(string name)
    {
        try
        {
            for (ImageName? n = TryParse(name); n != null; n = n.Child)
                if (n.Driver == "quorum") return false;
            return true;
        }
        catch (ArgumentException)
        {
            return true;
        }
    }

    /// <summary>The format drivers this toolkit opens; any other driver that is not a protocol is refused.</summary>
    public static readonly string[] Formats = ["qed", "raw", "qcow2"];

    /// <summary>True when <paramref name="name"/> is not a plain path: a <c>json:</c> name or a <c>file:</c> prefix.</summary>
    public static bool IsSpecial(string name) =>
        name.StartsWith("json:", StringComparison.Ordinal) || name.StartsWith("file:", StringComparison.Ordinal)
        || name.StartsWith("blkdebug:", StringComparison.Ordinal);

    /// <summary>Parses a <c>json:{...}</c> name or a <c>file:</c>-prefixed one; null for a plain path.</summary>
    /// <exception cref="ArgumentException">The name is malformed or uses a driver or option not supported (qemu's wording).</exception>
    public static ImageName? TryParse(string name)
    {
        if (name.StartsWith("file:", StringComparison.Ordinal)) return new ImageName("file", name["file:".Length..], null, []);
        if (name.StartsWith("blkdebug:", StringComparison.Ordinal))
        {
            // blkdebug:CONFIG:IMAGE; a config file (rules in a file) is not read, so only an empty one is taken.
            string rest = name["blkdebug:".Length..];
            int colon = rest.IndexOf(':', StringComparison.Ordinal);
            if (colon != 0) throw new ArgumentException($"Could not read blkdebug config file '{(colon < 0 ? rest : rest[..colon])}': not supported");
            string image = rest[1..];
            return new ImageName("blkdebug", null, TryParse(image) ?? new ImageName("file", image, null, []), []);
        }
        if (!name.StartsWith("json:", StringComparison.Ordinal)) return null;
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(QuotesToJson(name["json:".Length..]));
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            string text = name["json:".Length..];
            throw new ArgumentException($"Could not parse the JSON options: {JsonSyntaxError.Describe(text) ?? "JSON parse error, " + e.Message}", e);
        }
        if (root.ValueKind != JsonValueKind.Object) throw new ArgumentException("Invalid JSON object given");
        return FromTree(Tree.FromJson(root), null);
    }

    /// <summary>
    /// Parses qemu's option string (<c>driver=qed,file.driver=file,file.filename=F</c>; ",," stands for a comma), as
    /// <c>--image-opts</c> takes it. Options that only tune an open (read-only, cache, locking) are accepted and
    /// ignored; <paramref name="format"/> is the driver when the string names none.
    /// </summary>
    public static ImageName FromOptions(string options, string? format)
    {
        var tree = new Tree();
        foreach (string pair in SplitOptions(options))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            string key = eq < 0 ? pair : pair[..eq], value = eq < 0 ? "on" : pair[(eq + 1)..];
            tree.Set(key.Split('.'), value);
        }
        return FromTree(tree, format ?? Probe);
    }

    /// <summary>The driver of a top node that names no format: the format is probed from the file.</summary>
    public const string Probe = "probe";

    /// <summary>The name of the format at the top (the outermost format node); null when the name has none.</summary>
    public string? Format => Formats.Contains(Driver) ? Driver : null;

    /// <summary>The host file at the bottom of the node chain.</summary>
    public string HostFile => Filename ?? Child?.HostFile ?? Children.FirstOrDefault()?.HostFile ?? throw new ArgumentException("The 'file' block driver requires a file name");

    /// <summary>
    /// The name qemu shows for the image: the host file when nothing but format and file nodes lie between (a relative
    /// one with a colon gets "./", so that it is not read as a protocol), else null (qemu shows a json: name).
    /// </summary>
    public string? PlainName
    {
        get
        {
            for (ImageName? n = this; n != null; n = n.Child)
                if (n.Driver is "blkdebug" or "quorum") return null;
            string file = HostFile;
            return !Path.IsPathRooted(file) && file.Contains(':', StringComparison.Ordinal) && !file.StartsWith("./", StringComparison.Ordinal)
                ? "./" + file : file;
        }
    }

    /// <summary>This node as a <c>json:</c> name, which <see cref="TryParse"/> reads back to an equal node tree.</summary>
    public string ToJsonName() => "json:" + ToJson();

    private string ToJson()
    {
        var parts = Driver == Probe ? [] : new List<string> { $"\"driver\": {Quote(Driver)}" };
        if (Filename != null) parts.Add($"\"filename\": {Quote(Filename)}");
        if (Child != null) parts.Add($"\"{(Driver == "blkdebug" ? "image" : "file")}\": {Child.ToJson()}");
        if (Driver == "quorum")
            parts.Add($"\"vote-threshold\": {VoteThreshold}, \"children\": [{string.Join(", ", Children.Select(c => c.ToJson()))}]");
        if (Errors.Count > 0)
            parts.Add("\"inject-error\": [" + string.Join(", ", Errors.Select(e =>
                $"{{\"event\": \"{e.Event}\", \"errno\": {e.Errno}, \"once\": {(e.Once ? "true" : "false")}"
                + (e.Sector is { } s ? $", \"sector\": {s}" : "")
                + (e.IoType is { } t ? $", \"iotype\": \"{InjectedError.IoTypeName(t)}\"" : "") + "}")) + "]");
        return "{" + string.Join(", ", parts) + "}";
    }

    private static string Quote(string text) => "\"" + JsonEncodedText.Encode(text, System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping) + "\"";

    /// <summary>The host file <paramref name="name"/> stands for: itself when it is a plain path (or cannot be parsed).</summary>
    public static string HostPathOf(string name)
    {
        try
        {
            return TryParse(name)?.HostFile ?? name;
        }
        catch (ArgumentException)
        {
            return name;
        }
    }

    /// <summary>The name qemu shows for an image opened as <paramref name="name"/>: <see cref="PlainName"/> when there is one.</summary>
    public static string Display(string name)
    {
        try
        {
            return TryParse(name)?.PlainName ?? name;
        }
        catch (ArgumentException)
        {
            return name;
        }
    }

    /// <summary>The node under the outermost format, or the whole name when it names no format.</summary>
    public ImageName Storage => Format != null || Driver == Probe ? Child ?? throw new ArgumentException($"A block device must be specified for \"file\"") : this;

    /// <summary>
    /// Resolves a backing file name recorded in the image at <paramref name="imagePath"/>: special names stay as
    /// they are (qemu treats protocol names as absolute); a relative name joins the folder of the image's host file.
    /// </summary>
    public static string ResolveBacking(string imagePath, string backingName)
    {
        if (IsSpecial(backingName) || Path.IsPathRooted(backingName)) return backingName;
        if (!HasFolder(imagePath)) throw new ImageFormatException("Cannot generate a base directory for quorum nodes", "backing_filename");
        string baseFile = TryParse(imagePath) is { } name ? name.PlainName ?? name.HostFile : imagePath;
        return Path.Combine(Path.GetDirectoryName(baseFile) ?? "", backingName);
    }

    private static ImageName FromTree(Tree tree, string? defaultDriver)
    {
        string? given = tree.Text("driver");
        if (given is null or "blkdebug" && tree.Has("filename") && tree.Peek("filename") is string f && f.StartsWith("blkdebug:", StringComparison.Ordinal))
        {
            // A protocol name as the file name: its node, with this tree's options (file.align=...) on it.
            ImageName node = TryParse(f)!;
            tree.Remove("filename");
            tree.Allow("config", "set-state", "align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard", "max-discard");
            var rules = tree.Remove("inject-error") is { } l ? InjectedError.FromTree(l) : [];
            tree.Refuse("blkdebug");
            return node with { Errors = rules };
        }
        string driver = given ?? (defaultDriver == Probe && tree.Has("filename") && !tree.Has("file") ? "file" : defaultDriver)
            ?? (tree.Has("filename") ? "file" : Probe);
        switch (driver)
        {
            case "file":
                tree.Allow("locking", "aio", "pr-manager", "x-check-cache-dropped", "aio-max-batch", "drop-cache");
                string filename = tree.Text("filename") ?? throw new ArgumentException("The 'file' block driver requires a file name");
                tree.Refuse(driver);
                return new ImageName("file", filename.StartsWith("file:", StringComparison.Ordinal) ? filename[5..] : filename, null, []);
            case "blkdebug":
                tree.Allow("config", "set-state", "align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard", "max-discard");
                var errors = tree.Remove("inject-error") is { } list ? InjectedError.FromTree(list) : [];
                ImageName image = ChildOf(tree, "image", driver);
                tree.Refuse(driver);
                return new ImageName("blkdebug", null, image, errors);
            case "quorum":
                string threshold = tree.Text("vote-threshold") ?? throw new ArgumentException("Parameter 'vote-threshold' is missing");
                if (!int.TryParse(threshold, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int votes))
                    throw new ArgumentException("Parameter 'vote-threshold' expects a number");
                var children = tree.Remove("children") is { } kids ? tree.Items(kids).Select(k => FromTree(k, null)).ToList() : [];
                tree.Allow("blkverify", "rewrite-corrupted", "read-pattern");
                tree.Refuse(driver);
                if (children.Count == 0) throw new ArgumentException("Number of provided children must be 1 or more");
                return new ImageName("quorum", null, null, []) { Children = children, VoteThreshold = votes };
            default:
                if (!Formats.Contains(driver) && driver != Probe) throw new ArgumentException($"Unknown driver '{driver}'");
                tree.Allow("read-only", "cache.direct", "cache.no-flush", "discard", "force-share", "auto-read-only", "detect-zeroes",
                    "backing", "node-name");
                ImageName file = ChildOf(tree, "file", driver);
                tree.Refuse(driver == Probe ? "qed" : driver);
                return new ImageName(driver, null, file, []);
        }
    }

    /// <summary>A child given as an object (<c>file.driver=...</c>) or as a bare file name (<c>file=F</c>).</summary>
    private static ImageName ChildOf(Tree tree, string key, string driver)
    {
        object? child = tree.Remove(key);
        if (child is null && tree.Remove("filename") is string f) return new ImageName("file", f, null, []);
        return child switch
        {
            // A string child names another node (by device or node name); no other nodes exist here.
            string name => throw new ArgumentException($"Cannot find device='{name}' nor node-name='{name}'"),
            Tree sub => FromTree(sub, sub.Has("filename") ? "file" : null),
            _ => throw new ArgumentException(driver == "blkdebug"
                ? "Could not open 'blkdebug:': A block device must be specified for \"image\""
                : $"A block device must be specified for \"{key}\""),
        };
    }

    /// <summary>QEMU's JSON accepts single-quoted strings: rewrites them as double-quoted ones.</summary>
    private static string QuotesToJson(string text)
    {
        var sb = new StringBuilder(text.Length);
        char quote = '\0';
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quote == '\0')
            {
                if (c is '\'' or '"') { quote = c; sb.Append('"'); }
                else sb.Append(c);
            }
            else if (c == '\\' && i + 1 < text.Length) { sb.Append(c).Append(text[++i]); }
            else if (c == quote) { quote = '\0'; sb.Append('"'); }
            else if (c == '"') sb.Append("\\\"");
            else sb.Append(c);
        }
        return sb.ToString();
    }

    private static IEnumerable<string> SplitOptions(string options)
    {
        var current = new StringBuilder();
        for (int i = 0; i < options.Length; i++)
        {
            if (options[i] == ',' && i + 1 < options.Length && options[i + 1] == ',') { current.Append(','); i++; }
            else if (options[i] == ',') { yield return current.ToString(); current.Clear(); }
            else current.Append(options[i]);
        }
        if (current.Length > 0) yield return current.ToString();
    }

    /// <summary>Options as a tree of strings, lists and subtrees: the common form of JSON and dotted option keys.</summary>
    internal sealed class Tree
    {
        private readonly Dictionary<string, object> _items = new(StringComparer.Ordinal);
        private readonly List<string> _order = [];

        public static Tree FromJson(JsonElement obj)
        {
            var tree = new Tree();
            foreach (var p in obj.EnumerateObject()) tree.Put(p.Name, Value(p.Value));
            return tree;
        }

        private static object Value(JsonElement e) => e.ValueKind switch
        {
            JsonValueKind.Object => FromJson(e),
            JsonValueKind.Array => e.EnumerateArray().Select(Value).ToList(),
            JsonValueKind.String => e.GetString()!,
            JsonValueKind.True => "on",
            JsonValueKind.False => "off",
            _ => e.GetRawText(),
        };

        public void Set(string[] path, string value)
        {
            Tree node = this;
            for (int i = 0; i < path.Length - 1; i++)
            {
                if (!node._items.TryGetValue(path[i], out object? sub) || sub is not Tree t)
                {
                    t = new Tree();
                    node.Put(path[i], t);
                }
                node = t;
            }
            node.Put(path[^1], value);
        }

        private void Put(string key, object value)
        {
            if (!_items.ContainsKey(key)) _order.Add(key);
            _items[key] = value;
        }

        public bool Has(string key) => _items.ContainsKey(key);

        public object? Peek(string key) => _items.GetValueOrDefault(key);

        public string? Text(string key) => Remove(key) switch
        {
            null => null,
            string s => s,
            _ => throw new ArgumentException($"Invalid parameter type for '{key}', expected: string"),
        };

        public object? Remove(string key)
        {
            if (!_items.Remove(key, out object? value)) return null;
            _order.Remove(key);
            return value;
        }

        /// <summary>Drops options that only tune how a node is opened (dotted ones by their first part too).</summary>
        public void Allow(params string[] keys)
        {
            foreach (string key in keys)
            {
                string[] parts = key.Split('.');
                if (parts.Length == 1) { Remove(key); continue; }
                if (_items.TryGetValue(parts[0], out object? sub) && sub is Tree t)
                {
                    t.Remove(parts[1]);
                    if (t._items.Count == 0) Remove(parts[0]);
                }
            }
        }

        /// <summary>Any option left is one the driver does not know: qemu's words.</summary>
        public void Refuse(string driver)
        {
            if (_order.Count == 0) return;
            string key = _order[0];
            string shown = _items[key] is Tree t ? key + "." + t.FirstKey() : key;
            throw new ArgumentException(Formats.Contains(driver)
                ? $"Block format '{driver}' does not support the option '{shown}'"
                : $"Block protocol '{driver}' doesn't support the option '{shown}'");
        }

        private string FirstKey() => _order.Count == 0 ? "" : _items[_order[0]] is Tree t ? _order[0] + "." + t.FirstKey() : _order[0];

        public IEnumerable<Tree> Items(object list) => list switch
        {
            List<object> l => l.OfType<Tree>(),
            Tree t => t.IndexedChildren(),
            _ => [],
        };

        private IEnumerable<Tree> IndexedChildren() => _order.Select(k => _items[k]).OfType<Tree>();
    }
}
