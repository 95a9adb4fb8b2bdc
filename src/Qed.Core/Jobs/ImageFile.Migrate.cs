using Qed.Operations.Migration;

namespace Qed;

public static partial class ImageFile
{
    /// <summary>
    /// Migrates every QED image under <paramref name="sources"/> (files, and folders searched recursively) into
    /// <paramref name="targetDirectory"/> as qcow2 or raw: plans the migration (<see cref="MigrationPlan.CreateAsync"/>,
    /// which a dry run calls alone), then converts, verifies and renames each image into place, chains kept. The report
    /// file is rewritten after every image, so a run cut off can be run again to finish.
    /// </summary>
    /// <param name="sources">Source files and folders.</param>
    /// <param name="targetDirectory">The target folder (created as needed).</param>
    /// <param name="options">Target format, flattening, jobs, salvage, report path; null for the defaults (qcow2, chains kept).</param>
    /// <param name="progress">Guest bytes of all the plan's images dealt with, with the source worked on most recently as
    /// <see cref="ImageProgress.CurrentImage"/> (see <see cref="ImageProgress"/>).</param>
    /// <param name="cancellationToken">Stops the run; the report holds what was finished.</param>
    /// <returns>What happened to each image (also written to the report file).</returns>
    /// <exception cref="FileNotFoundException">A source does not exist.</exception>
    /// <exception cref="ArgumentException">No sources, a source file that is not a QED image, a source inside the target
    /// folder, or invalid options.</exception>
    public static async Task<MigrationReport> MigrateAsync(IReadOnlyList<string> sources, string targetDirectory, MigrationOptions? options = null,
        IProgress<ImageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var plan = await MigrationPlan.CreateAsync(sources, targetDirectory, options, cancellationToken).ConfigureAwait(false);
        return await plan.RunAsync(progress, cancellationToken).ConfigureAwait(false);
    }
}
