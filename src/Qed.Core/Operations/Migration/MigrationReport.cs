using System.Text.Json;

namespace Qed.Operations.Migration;

/// <summary>What became of one image in a migration run.</summary>
public enum MigrationOutcome
{
    /// <summary>Converted and verified in this run.</summary>
    Migrated,
    /// <summary>Verified by an earlier run, its source unchanged and its target in place: nothing written.</summary>
    UpToDate,
    /// <summary>Converted with --salvage from a corrupt source: unreadable sectors are zeroes (listed); verified against what could be read.</summary>
    Salvaged,
    /// <summary>The source is corrupt: reported and skipped (no --salvage).</summary>
    Corrupt,
    /// <summary>Something else went wrong (an I/O error, a lock, a failed verification): nothing left under the target name.</summary>
    Failed,
    /// <summary>Not run: its backing file's migration did not succeed.</summary>
    BackingFailed,
}

/// <summary>A run of sectors that --salvage could not read, copied as zeroes.</summary>
/// <param name="Offset">Guest offset of the first byte.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Error">Why the first sector could not be read.</param>
public readonly record struct SalvagedRange(long Offset, long Length, string Error);

/// <summary>One image's line in the report.</summary>
public sealed record MigrationEntry
{
    /// <summary>The source file (full path).</summary>
    public required string Source { get; init; }
    /// <summary>The source's format.</summary>
    public required string SourceFormat { get; init; }
    /// <summary>The source's backing chain, top first (full paths).</summary>
    public IReadOnlyList<string> Chain { get; init; } = [];
    /// <summary>The target file (full path).</summary>
    public required string Target { get; init; }
    /// <summary>The target's format.</summary>
    public required string TargetFormat { get; init; }
    /// <summary>The backing file name recorded in the target, or null.</summary>
    public string? TargetBacking { get; init; }
    /// <summary>What happened.</summary>
    public MigrationOutcome Outcome { get; init; }
    /// <summary>Whether the target passed verification (its check clean, its content equal to the source's).</summary>
    public bool Verified { get; init; }
    /// <summary>What the target's consistency check said ("clean", or "none" for raw), or null when it did not run.</summary>
    public string? Check { get; init; }
    /// <summary>Why the image did not migrate (or what salvage noted), or null.</summary>
    public string? Error { get; init; }
    /// <summary>The guest size in bytes.</summary>
    public long VirtualSize { get; init; }
    /// <summary>The source's size, modification time and checksum when it was converted.</summary>
    public SourceFingerprint? SourceFingerprint { get; init; }
    /// <summary>The target's size and modification time after it was put in place.</summary>
    public SourceFingerprint? TargetFingerprint { get; init; }
    /// <summary>
    /// The backing target's size and modification time when this target was made over it: a backing target made
    /// again since (a changed source) means this one must be made again too.
    /// </summary>
    public SourceFingerprint? BackingFingerprint { get; init; }
    /// <summary>Whether the source was marked as needing a check (NEED_CHECK): read as it is, never repaired.</summary>
    public bool SourceDirty { get; init; }
    /// <summary>Seconds the conversion and verification took (0 when up to date).</summary>
    public double Seconds { get; init; }
    /// <summary>Sectors --salvage read as zeroes.</summary>
    public IReadOnlyList<SalvagedRange> Salvaged { get; init; } = [];

    /// <summary>Whether the result counts: the target is in place and verified.</summary>
    public bool Succeeded => Verified && Outcome is MigrationOutcome.Migrated or MigrationOutcome.UpToDate or MigrationOutcome.Salvaged;
}

/// <summary>
/// The report of a migration (the <c>--report</c> JSON file), also the state a re-run resumes from: every image of
/// the plan, with what became of it.
/// </summary>
public sealed class MigrationReport
{
    /// <summary>The report format's version.</summary>
    public const int Version = 1;

    /// <summary>Creates a report.</summary>
    internal MigrationReport(string targetDirectory, string targetFormat, bool flatten, IReadOnlyList<MigrationEntry> entries)
    {
        TargetDirectory = targetDirectory;
        TargetFormat = targetFormat;
        Flatten = flatten;
        Entries = entries;
    }

    /// <summary>The target folder.</summary>
    public string TargetDirectory { get; }
    /// <summary>The target format of QED images.</summary>
    public string TargetFormat { get; }
    /// <summary>Whether targets were flattened.</summary>
    public bool Flatten { get; }
    /// <summary>Every image, in plan order.</summary>
    public IReadOnlyList<MigrationEntry> Entries { get; }

    /// <summary>Whether every image migrated and verified, none salvaged.</summary>
    public bool AllVerified => Entries.All(e => e.Succeeded && e.Outcome != MigrationOutcome.Salvaged);

    /// <summary>Images with the outcome.</summary>
    public int Count(MigrationOutcome outcome) => Entries.Count(e => e.Outcome == outcome);

    /// <summary>The outcome's name in the report.</summary>
    internal static string Name(MigrationOutcome outcome) => outcome switch
    {
        MigrationOutcome.Migrated => "migrated",
        MigrationOutcome.UpToDate => "up-to-date",
        MigrationOutcome.Salvaged => "salvaged",
        MigrationOutcome.Corrupt => "corrupt",
        MigrationOutcome.BackingFailed => "backing-failed",
        _ => "failed",
    };

    private static MigrationOutcome Parse(string? name) => name switch
    {
        "migrated" => MigrationOutcome.Migrated,
        "up-to-date" => MigrationOutcome.UpToDate,
        "salvaged" => MigrationOutcome.Salvaged,
        "corrupt" => MigrationOutcome.Corrupt,
        "backing-failed" => MigrationOutcome.BackingFailed,
        _ => MigrationOutcome.Failed,
    };

    /// <summary>The report as JSON (indented, field names in qemu-img's style).</summary>
    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            w.WriteString("target-dir", TargetDirectory);
            w.WriteString("target-format", TargetFormat);
            w.WriteBoolean("flatten", Flatten);
            w.WriteNumber("images", Entries.Count);
            w.WriteNumber("succeeded", Entries.Count(e => e.Succeeded));
            w.WriteStartArray("entries");
            foreach (var e in Entries) Write(w, e);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static void Write(Utf8JsonWriter w, MigrationEntry e)
    {
        w.WriteStartObject();
        w.WriteString("source", e.Source);
        w.WriteString("source-format", e.SourceFormat);
        w.WriteStartArray("chain");
        foreach (string layer in e.Chain) w.WriteStringValue(layer);
        w.WriteEndArray();
        w.WriteString("target", e.Target);
        w.WriteString("target-format", e.TargetFormat);
        if (e.TargetBacking != null) w.WriteString("target-backing", e.TargetBacking);
        w.WriteString("status", Name(e.Outcome));
        w.WriteBoolean("verified", e.Verified);
        if (e.Check != null) w.WriteString("check", e.Check);
        if (e.Error != null) w.WriteString("error", e.Error);
        w.WriteNumber("virtual-size", e.VirtualSize);
        w.WriteBoolean("source-dirty", e.SourceDirty);
        WriteFingerprint(w, "source", e.SourceFingerprint);
        WriteFingerprint(w, "target", e.TargetFingerprint);
        WriteFingerprint(w, "backing-target", e.BackingFingerprint);
        w.WriteNumber("seconds", Math.Round(e.Seconds, 3));
        w.WriteStartArray("salvaged");
        foreach (var r in e.Salvaged)
        {
            w.WriteStartObject();
            w.WriteNumber("offset", r.Offset);
            w.WriteNumber("length", r.Length);
            w.WriteString("error", r.Error);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteFingerprint(Utf8JsonWriter w, string prefix, SourceFingerprint? f)
    {
        if (f is null) return;
        w.WriteNumber(prefix + "-size", f.Size);
        w.WriteString(prefix + "-mtime", f.ModifiedUtc);
        if (f.Sha256 != null) w.WriteString(prefix + "-sha256", f.Sha256);
    }

    /// <summary>Reads a report written by <see cref="ToJson"/>; null when the file does not exist.</summary>
    /// <exception cref="InvalidDataException">The file is not a migration report (it is then left alone).</exception>
    public static MigrationReport? TryRead(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("version", out var v) || v.GetInt32() != Version)
                throw new InvalidDataException($"'{path}' is not a qed migrate report (version {Version})");
            var entries = root.GetProperty("entries").EnumerateArray().Select(ReadEntry).ToList();
            return new MigrationReport(root.GetProperty("target-dir").GetString()!, root.GetProperty("target-format").GetString()!,
                root.GetProperty("flatten").GetBoolean(), entries);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{path}' is not a qed migrate report: {e.Message}", e);
        }
    }

    private static MigrationEntry ReadEntry(JsonElement e)
    {
        string? Text(string name) => e.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        SourceFingerprint? Fingerprint(string prefix) =>
            e.TryGetProperty(prefix + "-size", out var size) && Text(prefix + "-mtime") is { } mtime
                ? new SourceFingerprint(size.GetInt64(), mtime, Text(prefix + "-sha256"))
                : null;
        return new MigrationEntry
        {
            Source = Text("source")!,
            SourceFormat = Text("source-format")!,
            Chain = e.TryGetProperty("chain", out var chain) ? chain.EnumerateArray().Select(c => c.GetString()!).ToList() : [],
            Target = Text("target")!,
            TargetFormat = Text("target-format")!,
            TargetBacking = Text("target-backing"),
            Outcome = Parse(Text("status")),
            Verified = e.TryGetProperty("verified", out var ok) && ok.GetBoolean(),
            Check = Text("check"),
            Error = Text("error"),
            VirtualSize = e.TryGetProperty("virtual-size", out var vs) ? vs.GetInt64() : 0,
            SourceDirty = e.TryGetProperty("source-dirty", out var d) && d.GetBoolean(),
            SourceFingerprint = Fingerprint("source"),
            TargetFingerprint = Fingerprint("target"),
            BackingFingerprint = Fingerprint("backing-target"),
            Seconds = e.TryGetProperty("seconds", out var s) ? s.GetDouble() : 0,
            Salvaged = e.TryGetProperty("salvaged", out var list)
                ? list.EnumerateArray().Select(r => new SalvagedRange(r.GetProperty("offset").GetInt64(), r.GetProperty("length").GetInt64(),
                    r.TryGetProperty("error", out var m) ? m.GetString() ?? "" : "")).ToList()
                : [],
        };
    }

    /// <summary>Writes the report to <paramref name="path"/> atomically: a temporary file, synced, renamed over it.</summary>
    public async Task WriteAsync(string path, CancellationToken cancellationToken = default)
    {
        string temp = path + ".tmp";
        byte[] json = [.. ToJson(), (byte)'\n'];
        // Unchanged (a re-run of a finished migration): not rewritten.
        if (File.Exists(path) && (await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false)).AsSpan().SequenceEqual(json)) return;
        await using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            await stream.WriteAsync(json, cancellationToken).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
