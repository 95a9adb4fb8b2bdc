namespace Qed.Operations.Migration;

/// <summary>
/// What a migration will do, to inspect before running it: every QED image found under the sources (by its header,
/// not its name), each with the target it becomes, in the order they run (bottom-up along backing chains).
/// </summary>
/// <remarks>
/// Targets lie at the same path relative to the source given (a folder, or a file's own folder) with the extension
/// replaced by the target format's. With chains kept (qcow2, no <see cref="MigrationOptions.Flatten"/>), each overlay's
/// target is an overlay of its backing file's target, named relatively, with the backing format recorded; backing
/// files of other formats (raw, qcow2) are brought into the target folder in their own format, so that the target tree
/// stands alone. Backing names resolve as QEMU resolves them (<see cref="ImageName.ResolveBacking"/>).
/// </remarks>
public sealed class MigrationPlan
{
    internal MigrationPlan(string targetDirectory, MigrationOptions options, IReadOnlyList<MigrationStep> steps)
    {
        TargetDirectory = targetDirectory;
        Options = options;
        Steps = steps;
    }

    /// <summary>The target folder, a full path.</summary>
    public string TargetDirectory { get; }

    /// <summary>The options the plan was made with.</summary>
    public MigrationOptions Options { get; }

    /// <summary>Every image, bottom-up: a step's backing step comes before it.</summary>
    public IReadOnlyList<MigrationStep> Steps { get; }

    /// <summary>The report file the run reads and writes.</summary>
    public string ReportPath => Path.GetFullPath(Options.ReportPath ?? Path.Combine(TargetDirectory, MigrationOptions.DefaultReportName));

    /// <summary>
    /// Finds the QED images under <paramref name="sources"/> (files, and folders searched recursively) and plans their
    /// migration into <paramref name="targetDirectory"/>. Nothing is written. Sources that cannot be migrated (an
    /// unreadable header, a missing backing file) are steps with a <see cref="MigrationStep.Problem"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">A source does not exist.</exception>
    /// <exception cref="ArgumentException">No sources, a source file that is not a QED image, a source inside the
    /// target folder, or invalid options.</exception>
    public static Task<MigrationPlan> CreateAsync(IReadOnlyList<string> sources, string targetDirectory, MigrationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentException.ThrowIfNullOrEmpty(targetDirectory);
        options ??= new MigrationOptions();
        options.Validate();
        return MigrationPlanner.PlanAsync(sources, Path.GetFullPath(targetDirectory), options, cancellationToken);
    }

    /// <summary>
    /// Runs the plan: converts, verifies and renames each image into place, <see cref="MigrationOptions.Jobs"/> at a
    /// time, skipping results an earlier run verified whose source is unchanged. The report is rewritten after every
    /// image, so a run cut off at any point can be run again to finish.
    /// </summary>
    /// <param name="progress">Guest bytes of every image in the plan dealt with (copied, skipped as zero, or found up to
    /// date), with the source worked on most recently as <see cref="ImageProgress.CurrentImage"/>; reported from the
    /// threads doing the work (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the run; the report holds what was finished.</param>
    /// <exception cref="OperationCanceledException">Cancelled; the report holds what was finished.</exception>
    public Task<MigrationReport> RunAsync(IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default) =>
        MigrationRunner.RunAsync(this, progress is null ? null : new BytesOnly(progress), cancellationToken);

    /// <summary>Runs the plan with the qed tool's progress (images done and total as well as bytes).</summary>
    internal Task<MigrationReport> RunWithCountsAsync(IProgress<MigrationProgress>? progress, CancellationToken cancellationToken = default) =>
        MigrationRunner.RunAsync(this, progress, cancellationToken);

    /// <summary>The runner's reports as <see cref="ImageProgress"/>, handed on as they come.</summary>
    private sealed class BytesOnly(IProgress<ImageProgress> inner) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value) =>
            inner.Report(new ImageProgress(value.BytesDone, value.TotalBytes) { CurrentImage = value.CurrentImage });
    }
}
