using Qed.Formats.Qcow2;

namespace Qed.Operations.Migration;

/// <summary>How <see cref="MigrationPlan"/> lays out and runs a migration.</summary>
public sealed record MigrationOptions
{
    /// <summary>
    /// The target format: <see cref="ImageFormat.Qcow2"/> (default) or <see cref="ImageFormat.Raw"/>. Raw has no backing
    /// files, so it flattens.
    /// </summary>
    public ImageFormat TargetFormat { get; init; } = ImageFormat.Qcow2;

    /// <summary>
    /// The settings of every qcow2 target (cluster size, version, ...). Its size and backing fields are ignored: each
    /// target takes its source's size and the backing file the plan gives it.
    /// </summary>
    public Qcow2CreateOptions Qcow2 { get; init; } = new();

    /// <summary>Make every target standalone (the guest content of its whole chain) instead of keeping chains.</summary>
    public bool Flatten { get; init; }

    /// <summary>Images migrated at once (default: the number of cores). An overlay still waits for its backing file.</summary>
    public int Jobs { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Convert corrupt sources anyway, as <c>qemu-img convert --salvage</c> does: a sector that cannot be read (an I/O
    /// error, or a corrupt table entry) is copied as zeroes and listed in the report. Without it a corrupt source is
    /// reported and skipped.
    /// </summary>
    public bool Salvage { get; init; }

    /// <summary>
    /// The report file: read at the start (results verified by an earlier run are kept when their source is
    /// unchanged) and rewritten after every image. Null: <see cref="DefaultReportName"/> in the target folder.
    /// </summary>
    public string? ReportPath { get; init; }

    /// <summary>The report's file name in the target folder when <see cref="ReportPath"/> is not given.</summary>
    public const string DefaultReportName = "qed-migrate-report.json";

    /// <summary>Whether targets keep backing chains: qcow2 without <see cref="Flatten"/>.</summary>
    internal bool KeepsChains => !Flatten && TargetFormat == ImageFormat.Qcow2;

    /// <summary>The target format's file extension (with the dot).</summary>
    internal string TargetExtension => "." + TargetFormat.Name();

    internal void Validate()
    {
        if (TargetFormat is not (ImageFormat.Qcow2 or ImageFormat.Raw))
            throw new ArgumentException($"Unsupported target format {TargetFormat} (use ImageFormat.Qcow2 or ImageFormat.Raw)", nameof(TargetFormat));
        if (Jobs < 1) throw new ArgumentException($"Invalid number of jobs: {Jobs} (at least 1)", nameof(Jobs));
    }
}
