using System.Diagnostics;
using Qed.Formats.Qed;
using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>
/// The switch QED_PORTABLE_IO=1, which turns every Linux-only call off so that the fallbacks other hosts run are
/// tested here (test.sh runs the storage and crash tests a second time with it on). Each test asserts both ways, by
/// what the host shows: with the switch off a discard punches and growth reserves (st_blocks), with it on neither
/// happens and the bytes read the same; and the fallbacks keep their contracts.
/// </summary>
public sealed class PortableIOTests : IDisposable
{
    private readonly ScratchFiles _files = new();

    public void Dispose() => _files.Dispose();

    private static bool SwitchOn => Environment.GetEnvironmentVariable(HostIO.PortableVariable) == "1";

    /// <summary>The storage's own capability flags follow the variable: every Linux-only call on without it, off with it.</summary>
    [Fact]
    public void TheCapabilitiesFollowTheSwitch()
    {
        Assert.Equal(SwitchOn, HostIO.Portable);
        using var file = _files.Open("f.img", CacheMode.None);
        var caps = file.Capabilities;
        bool linux = !SwitchOn; // these tests run on Linux
        Assert.Equal(linux, caps.PunchHoles);
        Assert.Equal(linux, caps.Reserve);
        Assert.Equal(linux, caps.AllocationMap);
        Assert.Equal(linux, caps.RangedDurableWrites);
        Assert.Equal(linux, caps.CachedReads);
        Assert.Equal(linux && !IsTmpfs(_files["f.img"]), caps.BypassCache); // tmpfs refuses O_DIRECT either way
        Assert.Equal(linux ? LockKind.Ofd : LockKind.PosixRecord, caps.Locks);
        Assert.True(caps.Sparse);
    }

    /// <summary>
    /// A discard of 1 MiB of written data reads back as zeroes either way; with the switch off its blocks are freed
    /// (fallocate PUNCH_HOLE), with it on they stay (zeroes were written, st_blocks unchanged).
    /// </summary>
    [Fact]
    public async Task ADiscardPunchesOnlyWithTheSwitchOff()
    {
        string path = _files["d.img"];
        var data = new byte[2 << 20];
        new Random(5).NextBytes(data);
        File.WriteAllBytes(path, data);
        long before = ScratchFiles.BlocksOf(path);
        await using (var file = FileStorage.Open(path, writable: true))
        {
            await file.ZeroRangeAsync(0, 1 << 20);
            await file.FlushAsync();
            var back = new byte[2 << 20];
            await file.ReadAsync(0, back);
            Assert.True(back.AsSpan(0, 1 << 20).IndexOfAnyExcept((byte)0) < 0, "the discarded range does not read as zeroes");
            Assert.True(back.AsSpan(1 << 20).SequenceEqual(data.AsSpan(1 << 20)), "the bytes after the discard changed");
            Assert.Equal(2 << 20, file.Length);
        }
        long after = ScratchFiles.BlocksOf(path);
        if (SwitchOn) Assert.True(after >= before, $"st_blocks fell from {before} to {after} bytes with hole punching off");
        else Assert.True(after <= before - (1 << 20), $"st_blocks went from {before} to {after} bytes: no hole was punched");
    }

    /// <summary>Growing by 8 MiB reserves the space with the switch off (fallocate) and leaves a hole with it on.</summary>
    [Fact]
    public async Task GrowthReservesOnlyWithTheSwitchOff()
    {
        string path = _files["g.img"];
        File.WriteAllBytes(path, new byte[4096]);
        await using (var file = FileStorage.Open(path, writable: true))
            await file.GrowAsync(8 << 20 | 4096);
        long blocks = ScratchFiles.BlocksOf(path);
        Assert.Equal(8 << 20 | 4096, new FileInfo(path).Length);
        if (SwitchOn) Assert.True(blocks < 1 << 20, $"{blocks} bytes allocated after growing with fallocate off");
        else Assert.True(blocks >= 8 << 20, $"only {blocks} bytes allocated after growing 8 MiB with fallocate");
    }

    /// <summary>
    /// A discard that runs past the end of the file leaves the length alone and the bytes in the file zero: punching
    /// keeps the size, and the fallback writes zeroes only up to the end (it wrote them all, growing the file, before).
    /// </summary>
    [Fact]
    public async Task ADiscardPastTheEndLeavesTheLengthAlone()
    {
        string path = _files["e.img"];
        var data = new byte[10_000];
        new Random(9).NextBytes(data);
        File.WriteAllBytes(path, data);
        await using var file = FileStorage.Open(path, writable: true);
        await file.ZeroRangeAsync(4096, 4 << 20);
        Assert.Equal(10_000, file.Length);
        var back = new byte[10_000];
        await file.ReadAsync(0, back);
        Assert.True(back.AsSpan(0, 4096).SequenceEqual(data.AsSpan(0, 4096)), "bytes before the discard changed");
        Assert.True(back.AsSpan(4096).IndexOfAnyExcept((byte)0) < 0, "the discarded bytes do not read as zeroes");
    }

    /// <summary>
    /// Another open of a locked image, closed while the lock holder stays, must not take the holder's locks with it.
    /// With record locks (the switch on, as on macOS) closing any descriptor of a file drops all of the process's
    /// locks on it, so the storage keeps such a handle open until the holder goes; with OFD locks it cannot happen.
    /// qemu-img, a real other process, must still be refused afterwards, and admitted once the holder is gone.
    /// </summary>
    [Fact]
    public async Task ClosingAnotherOpenKeepsTheHoldersLocksForQemu()
    {
        string path = _files["l.qed"];
        await QedImage.CreateAsync(path, new QedCreateOptions { Size = 1 << 20 });
        await using (var writer = await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = false }))
        {
            using (FileStorage.Open(path, writable: false, locking: FileLockMode.None)) { }
            await using (await DiskImage.OpenAsync(path, new ImageOpenOptions { ReadOnly = true, Locking = false })) { }
            var refused = await QemuImgInfoAsync(path);
            Assert.True(refused.ExitCode != 0 && refused.Stderr.Contains("Failed to get shared \"write\" lock"),
                $"qemu-img info opened an image a writer holds: exit {refused.ExitCode}, {refused.Stderr}");
        }
        var admitted = await QemuImgInfoAsync(path);
        Assert.True(admitted.ExitCode == 0, $"qemu-img info was refused after the writer closed: {admitted.Stderr}");
    }

    private static async Task<(int ExitCode, string Stderr)> QemuImgInfoAsync(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("qemu-img", ["info", path]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stderr);
    }

    private static bool IsTmpfs(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("stat", ["-f", "-c", "%T", path]) { RedirectStandardOutput = true })!;
        string type = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return type == "tmpfs";
    }
}
