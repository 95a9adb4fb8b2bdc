using System.Diagnostics;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Tests.Storage;

/// <summary>
/// QEMU's image locks between opens in one process (OFD locks belong to the open file, so two opens here exclude
/// each other as two processes do): writers exclude everyone, readers share with readers, -U shares with writers,
/// locks go on dispose, and opting out takes none. Also: names that are not regular files are refused unopened.
/// </summary>
public sealed class ImageLockTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-lock").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private async Task<string> NewImageAsync(string name = "a.qed", string? backing = null)
    {
        string path = Path.Combine(_dir, name);
        await QedImage.CreateAsync(path, new QedCreateOptions { Size = 1 << 20, BackingFile = backing, BackingFormat = backing is null ? null : ImageFormat.Qed });
        return path;
    }

    private static Task<DiskImage> OpenAsync(string path, bool readOnly, bool forceShare = false, bool locking = true) =>
        DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = readOnly, ForceShare = forceShare, Locking = locking });

    [Fact]
    public async Task ASecondWriterIsRefused()
    {
        string path = await NewImageAsync();
        await using var first = await OpenAsync(path, readOnly: false);
        var e = await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(path, readOnly: false));
        Assert.Equal($"Could not open '{path}': Failed to get \"write\" lock", e.Message);
        Assert.Equal($"Is another process using the image [{path}]?", e.Hint);
    }

    [Fact]
    public async Task AWriterAndAReaderExcludeEachOther()
    {
        string path = await NewImageAsync();
        await using (await OpenAsync(path, readOnly: false))
        {
            var e = await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(path, readOnly: true));
            Assert.Equal("Failed to get shared \"write\" lock", e.Reason);
        }
        await using (await OpenAsync(path, readOnly: true))
        {
            var e = await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(path, readOnly: false));
            Assert.Equal("Failed to get \"write\" lock", e.Reason);
        }
    }

    [Fact]
    public async Task ReadersShare()
    {
        string path = await NewImageAsync();
        await using var a = await OpenAsync(path, readOnly: true);
        await using var b = await OpenAsync(path, readOnly: true);
        await using var c = await OpenAsync(path, readOnly: true, forceShare: true);
    }

    [Fact]
    public async Task ForceShareReadsBesideAWriterAndIsRefusedForAWriter()
    {
        string path = await NewImageAsync();
        await using var writer = await OpenAsync(path, readOnly: false);
        await writer.WriteAsync(0, new byte[] { 7 });
        await writer.FlushAsync();
        await using var reader = await OpenAsync(path, readOnly: true, forceShare: true);
        var buffer = new byte[1];
        await reader.ReadAsync(0, buffer);
        Assert.Equal(7, buffer[0]);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => OpenAsync(path, readOnly: false, forceShare: true));
        Assert.StartsWith("force-share=on can only be used with read-only images", e.Message);
    }

    [Fact]
    public async Task LocksAreReleasedOnDispose()
    {
        string path = await NewImageAsync();
        await (await OpenAsync(path, readOnly: false)).DisposeAsync();
        await using var again = await OpenAsync(path, readOnly: false);
    }

    [Fact]
    public async Task WithLockingOffNothingIsTakenOrTested()
    {
        string path = await NewImageAsync();
        await using var writer = await OpenAsync(path, readOnly: false);
        await using var other = await OpenAsync(path, readOnly: true, locking: false);
        await using (var unlocked = await OpenAsync(path, readOnly: false, locking: false)) { }
        await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(path, readOnly: true));
    }

    [Fact]
    public async Task ABackingFileIsLockedAsAReader()
    {
        string basePath = await NewImageAsync("base.qed");
        string overlay = await NewImageAsync("top.qed", backing: "base.qed");
        await using var top = await OpenAsync(overlay, readOnly: false);
        var e = await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(basePath, readOnly: false));
        Assert.Equal("Failed to get \"write\" lock", e.Reason);
        await using var reader = await OpenAsync(basePath, readOnly: true);
        // And the other way: a writer of the base stops the overlay's open, naming the base.
        await top.DisposeAsync();
        await reader.DisposeAsync();
        await using var baseWriter = await OpenAsync(basePath, readOnly: false);
        var e2 = await Assert.ThrowsAsync<ImageLockedException>(() => OpenAsync(overlay, readOnly: false));
        Assert.Equal($"Could not open '{overlay}': Could not open backing file: Failed to get shared \"write\" lock", e2.Message);
        Assert.Equal(basePath, e2.FileName);
    }

    [Fact]
    public async Task CreatingOverAnImageInUseIsRefusedAndLeavesItWhole()
    {
        string path = await NewImageAsync();
        byte[] before = await File.ReadAllBytesAsync(path);
        await using var reader = await OpenAsync(path, readOnly: true);
        var e = await Assert.ThrowsAsync<ImageLockedException>(() => QedImage.CreateAsync(path, new QedCreateOptions { Size = 4 << 20 }));
        Assert.Equal("Failed to get \"write\" lock", e.Reason);
        Assert.Equal(before, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task AFifoIsRefusedAsAnImageAndAsACreateTargetAndStays()
    {
        string fifo = Path.Combine(_dir, "fifo");
        using (var mk = Process.Start("mkfifo", fifo)) mk.WaitForExit();
        // Opening a FIFO read-only blocks until a writer comes: the bound makes a hang a failure.
        var open = DiskImage.OpenAsync(fifo, new ImageOpenOptions { ReadOnly = true });
        var e = await Assert.ThrowsAnyAsync<IOException>(() => open.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal($"Could not open '{fifo}': 'file' driver requires '{fifo}' to be a regular file", e.Message);
        var c = await Assert.ThrowsAnyAsync<IOException>(() => QedImage.CreateAsync(fifo, new QedCreateOptions { Size = 1 << 20 }).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("Not a regular file", c.Message);
        Assert.True(File.Exists(fifo), "the FIFO was removed");
        var dir = await Assert.ThrowsAnyAsync<IOException>(() => DiskImage.OpenAsync(_dir));
        Assert.Equal($"Could not open '{_dir}': 'file' driver requires '{_dir}' to be a regular file", dir.Message);
    }

    [Fact]
    public async Task AFailedCreateRemovesOnlyAFileItMade()
    {
        // A backing file that does not exist fails create after validation; a new name must not be left behind.
        string fresh = Path.Combine(_dir, "new.qed");
        await Assert.ThrowsAnyAsync<IOException>(() => QedImage.CreateAsync(fresh, new QedCreateOptions { BackingFile = "missing.qed", BackingFormat = ImageFormat.Qed }));
        Assert.False(File.Exists(fresh));
        await using (var f = FileStorage.Create(fresh)) Assert.True(f.CreatedFile);
        File.Delete(fresh);
        string existing = await NewImageAsync("old.qed");
        await using (var f = FileStorage.Create(existing)) Assert.False(f.CreatedFile);
        Assert.True(File.Exists(existing));
    }

    [Fact]
    public void SameFileSeesHardLinksAndSymlinks()
    {
        string a = Path.Combine(_dir, "a"), hard = Path.Combine(_dir, "h"), soft = Path.Combine(_dir, "s"), other = Path.Combine(_dir, "o");
        File.WriteAllBytes(a, [1]);
        File.WriteAllBytes(other, [1]);
        using (var ln = Process.Start("ln", [a, hard])) ln.WaitForExit();
        File.CreateSymbolicLink(soft, a);
        Assert.True(FileStorage.IsSameFile(a, hard));
        Assert.True(FileStorage.IsSameFile(soft, hard));
        Assert.False(FileStorage.IsSameFile(a, other));
        Assert.False(FileStorage.IsSameFile(a, Path.Combine(_dir, "missing")));
    }
}
