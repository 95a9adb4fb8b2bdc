using Qed.Formats.Raw;

namespace Qed.Cli;

/// <summary>qemu's warning, at open, for a raw image opened writable with no format named.</summary>
internal static class ProbeWarning
{
    /// <summary>Prints qemu's three lines to stderr when <paramref name="image"/> is a probed, writable raw image.</summary>
    /// <param name="image">The opened image.</param>
    /// <param name="path">The file name as the user gave it (qemu quotes it so).</param>
    public static void PrintIfProbedRaw(DiskImage image, string path)
    {
        if (image is not RawImage { IsProbed: true, IsReadOnly: false }) return;
        Console.Error.WriteLine($"WARNING: Image format was not specified for '{path}' and probing guessed raw.");
        Console.Error.WriteLine("         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.");
        Console.Error.WriteLine("         Specify the 'raw' format explicitly to remove the restrictions.");
    }
}
