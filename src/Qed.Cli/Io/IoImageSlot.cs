using Qed.Formats.Qed;

namespace Qed.Cli.Io;

/// <summary>
/// The one image qemu-io has open, if any, and the temporary overlay it owns when opened with -s (deleted at
/// close). Opening while one is open, or failing to open, prints qemu-io's message and leaves the slot as it was.
/// </summary>
internal sealed class IoImageSlot(IoOutput output)
{
    private string? _snapshotFile;

    /// <summary>The open image, or null.</summary>
    public DiskImage? Image { get; private set; }

    /// <summary>The format (-f) of the command line, which the open command uses too.</summary>
    public string? DefaultFormat { get; set; }

    /// <summary>Whether the command line gave --image-opts, which the open command uses too.</summary>
    public bool DefaultImageOpts { get; set; }

    /// <summary>Opens the image <paramref name="spec"/> names; false (after qemu-io's message) when it cannot.</summary>
    public async Task<bool> OpenAsync(IoOpenSpec spec, CancellationToken ct)
    {
        if (Image is not null)
        {
            output.ErrorReport("file open already, try 'help close'");
            return false;
        }
        string path = spec.Target;
        try
        {
            string? format = spec.Format;
            if (spec.ImageOpts) (path, format) = IoOpenSpec.FromOptions(spec.Target, format);
            if (spec.Snapshot && !spec.ReadOnly) return await OpenSnapshotAsync(path, format, spec.Cache, ct);
            Image = await ImageArgs.OpenAsync(path, format, spec.ReadOnly, ct: ct, cache: spec.Cache, forceShare: spec.ForceShare);
            ProbeWarning.PrintIfProbedRaw(Image, path);
            return true;
        }
        catch (CommandException e)
        {
            // qemu-io prints the open's reason after "can't open device X: ", without the "Could not open 'X': " that
            // qemu-img (and ImageArgs) put first; only a missing file's reason keeps it, as in qemu-io.
            string prefix = $"Could not open '{path}': ";
            bool strip = e.Message.StartsWith(prefix, StringComparison.Ordinal)
                && (e.InnerException is not FileNotFoundException
                    || e.Message.AsSpan(prefix.Length).StartsWith("Could not open backing file: ", StringComparison.Ordinal));
            string reason = strip ? e.Message[prefix.Length..] : e.Message;
            // An option string names no device: qemu-io then says only "can't open: ".
            output.ErrorReport(spec.ImageOpts ? $"can't open: {reason}" : $"can't open device {path}: {reason}");
            if (CliRunner.Find<ImageLockedException>(e) is { } locked) output.Error(locked.Hint);
            return false;
        }
    }

    /// <summary>
    /// -s: the image is only read; writes go to a temporary qed overlay backed by it (as qemu-io's temporary
    /// overlay), which <see cref="CloseAsync"/> deletes.
    /// </summary>
    private async Task<bool> OpenSnapshotAsync(string path, string? format, Storage.CacheMode cache, CancellationToken ct)
    {
        string full = Path.GetFullPath(path);
        long size;
        ImageFormat backingFormat;
        await using (var image = await ImageArgs.OpenAsync(full, format, readOnly: true, ct: ct))
        {
            size = image.Size;
            backingFormat = image.Format;
        }
        string overlay = Path.Combine(Path.GetTempPath(), $"qed-io-snapshot-{Environment.ProcessId}-{Guid.NewGuid():N}.qed");
        await QedImage.CreateAsync(overlay, new QedCreateOptions { Size = size, BackingFile = full, BackingFormat = backingFormat }, ct);
        _snapshotFile = overlay;
        try
        {
            Image = await ImageArgs.OpenAsync(overlay, "qed", readOnly: false, ct: ct, cache: cache);
        }
        catch
        {
            File.Delete(overlay);
            _snapshotFile = null;
            throw;
        }
        return true;
    }

    /// <summary>Closes the open image, if any (deleting a snapshot overlay); the slot is empty afterwards.</summary>
    public async Task CloseAsync()
    {
        var image = Image;
        Image = null;
        try
        {
            if (image is not null) await image.DisposeAsync();
        }
        finally
        {
            if (_snapshotFile is not null) File.Delete(_snapshotFile);
            _snapshotFile = null;
        }
    }
}
