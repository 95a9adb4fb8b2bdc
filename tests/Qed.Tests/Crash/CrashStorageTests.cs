namespace Qed.Tests.Crash;

/// <summary>The fault-injecting storage itself: what a crash keeps, drops and tears.</summary>
public class CrashStorageTests
{
    private static byte[] Bytes(int length, byte value) => Enumerable.Repeat(value, length).ToArray();

    private static async Task<CrashStorage> ThreeWritesAsync()
    {
        var storage = new CrashStorage(new byte[1024]);
        await storage.WriteAsync(0, Bytes(512, 1));      // op 0
        await storage.FlushAsync();                      // op 1
        await storage.WriteAsync(512, Bytes(512, 2));    // op 2
        await storage.WriteAsync(1024, Bytes(2048, 3));  // op 3: extends the file, four sectors
        return storage;
    }

    private static byte[] Content(Qed.Storage.MemoryStorage m)
    {
        var bytes = new byte[m.Length];
        m.ReadAsync(0, bytes).AsTask().Wait();
        return bytes;
    }

    [Fact]
    public async Task FlushedWritesAreAlwaysKeptAndUnflushedOnesFollowTheirFate()
    {
        var storage = await ThreeWritesAsync();
        var random = new Random(1);
        Assert.Equal(2, storage.DurablePrefix(4));

        var dropAll = Content(storage.Materialize(4, (_, _) => CrashStorage.Fate.Drop, random));
        Assert.Equal(1024, dropAll.Length);
        Assert.Equal(Bytes(512, 1), dropAll[..512]);
        Assert.Equal(Bytes(512, 0), dropAll[512..]);

        var keepAll = Content(storage.Materialize(4, (_, _) => CrashStorage.Fate.Keep, random));
        Assert.Equal(3072, keepAll.Length);
        Assert.Equal(Bytes(512, 2), keepAll[512..1024]);
        Assert.Equal(Bytes(2048, 3), keepAll[1024..]);

        var onlyLast = Content(storage.Materialize(4, (i, _) => i == 3 ? CrashStorage.Fate.Keep : CrashStorage.Fate.Drop, random));
        Assert.Equal(Bytes(512, 0), onlyLast[512..1024]);
        Assert.Equal(Bytes(2048, 3), onlyLast[1024..]);

        var prefix = Content(storage.Materialize(1, (_, _) => CrashStorage.Fate.Drop, random));
        Assert.Equal(Bytes(1024, 0), prefix); // the first write was not flushed yet at crash point 1
    }

    [Fact]
    public async Task ATornWriteKeepsWholeSectorsOnly()
    {
        var storage = await ThreeWritesAsync();
        var seen = new HashSet<string>();
        var random = new Random(2);
        for (int i = 0; i < 200; i++)
        {
            var bytes = Content(storage.Materialize(4, (k, _) => k == 3 ? CrashStorage.Fate.Tear : CrashStorage.Fate.Drop, random));
            var pattern = new char[4];
            for (int s = 0; s < 4; s++)
            {
                int at = 1024 + s * 512;
                var sector = at < bytes.Length ? bytes[at..Math.Min(at + 512, bytes.Length)] : [];
                Assert.True(sector.Length == 0 || sector.All(b => b == 3) || sector.All(b => b == 0));
                pattern[s] = sector.Length > 0 && sector[0] == 3 ? 'x' : '.';
            }
            seen.Add(new string(pattern));
        }
        Assert.True(seen.Count > 8, $"only {seen.Count} tear patterns"); // sectors torn independently
    }
}
