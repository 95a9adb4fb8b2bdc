using Qed.Check;
using Qed.Formats.Qed;
using Qed.Nbd;

namespace Qed.Interop.Tests.Packaging;

/// <summary>
/// The program <see cref="PackagingTests"/> compiles in a fresh console app against the Qed.Core and Qed.Nbd
/// packages (this very file is copied there). It is also compiled into the test project, so a change of the public
/// API that breaks it shows at build time. It uses only the public API; its exit code and output say what failed.
/// </summary>
public static class ConsumerProgram
{
    /// <summary>Creates a QED image at <c>args[0]</c>, writes, reopens and reads it back, then checks it.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        string path = args[0];
        await (await DiskImage.CreateAsync(path, ImageFormat.Qed, new QedCreateOptions { Size = 4L << 20 })).DisposeAsync();
        // Unaligned, across a cluster boundary (64 KiB clusters): allocation, read-modify-write and two L2 entries.
        const long Offset = (64 << 10) - 1000;
        byte[] data = new byte[70_000];
        new Random(17).NextBytes(data);
        await using (var disk = await DiskImage.OpenAsync(path))
        {
            await disk.WriteAsync(Offset, data);
            await disk.FlushAsync();
        }
        byte[] back = new byte[data.Length + 2000];
        await using (var disk = await DiskImage.OpenAsync(path))
            await disk.ReadAsync(Offset - 1000, back);
        if (back.AsSpan(0, 1000).ContainsAnyExcept((byte)0) || back.AsSpan(data.Length + 1000).ContainsAnyExcept((byte)0))
        {
            Console.Error.WriteLine("bytes around the write are not zero");
            return 1;
        }
        if (!back.AsSpan(1000, data.Length).SequenceEqual(data))
        {
            Console.Error.WriteLine("the bytes read back differ from those written");
            return 1;
        }
        var report = await ImageFile.CheckAsync(path, new CheckOptions { Format = ImageFormat.Qed });
        if (report.Corruptions != 0 || report.Leaks != 0)
        {
            Console.Error.WriteLine($"check: {report.Corruptions} corruptions, {report.Leaks} leaks");
            return 1;
        }
        Console.WriteLine($"ok: {data.Length} bytes written and read back, 0 corruptions, 0 leaks; {typeof(NbdServer).Assembly.GetName().Name} {typeof(NbdServer).Assembly.GetName().Version} loaded");
        return 0;
    }
}
