using System.Diagnostics;
using Qed.Storage;

namespace Qed.Tests.Smoke;

public class SmokeTests
{
    [Fact]
    public async Task WriteReadAndQemuCheck()
    {
        string dir = Directory.CreateTempSubdirectory("qed-smoke").FullName;
        string path = Path.Combine(dir, "a.qed");
        await QedImage.CreateAsync(path, new QedCreateOptions { Size = 64L << 20 });
        var rnd = new Random(1);
        var model = new byte[64 << 20];
        await using (var img = await DiskImage.OpenAsync(path))
        {
            for (int i = 0; i < 200; i++)
            {
                long off = rnd.NextInt64(0, model.Length - 300000);
                int len = rnd.Next(1, 300000);
                var data = new byte[len];
                rnd.NextBytes(data);
                await img.WriteAsync(off, data);
                data.CopyTo(model, off);
            }
            var buf = new byte[model.Length];
            await img.ReadAsync(0, buf);
            Assert.True(buf.AsSpan().SequenceEqual(model));
        }
        File.WriteAllBytes(Path.Combine(dir, "m.raw"), model);
        var p = Process.Start(new ProcessStartInfo("qemu-img", ["check", path]) { RedirectStandardOutput = true })!;
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, output);
        p = Process.Start(new ProcessStartInfo("qemu-img", ["compare", "-f", "qed", "-F", "raw", path, Path.Combine(dir, "m.raw")]) { RedirectStandardOutput = true })!;
        output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, output);
    }
}
