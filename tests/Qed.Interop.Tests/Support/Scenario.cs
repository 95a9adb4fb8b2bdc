namespace Qed.Interop.Tests.Support;

/// <summary>
/// An image to build and a list of qemu-io commands to run on it. <see cref="BuildReference"/> applies the same
/// commands to a raw file (with qemu-io -f raw), which is the model the QED image must read as.
/// </summary>
/// <param name="Name">Shown in test names.</param>
/// <param name="CreateOptions">qemu-img create options for the QED image (before the file name).</param>
/// <param name="Size">Image size argument.</param>
/// <param name="Backing">Backing file to make first: null, "raw" or "qed".</param>
/// <param name="BackingSize">Size of the backing file.</param>
/// <param name="BackingCommands">qemu-io commands that fill the backing file.</param>
/// <param name="Commands">qemu-io commands that write the image under test.</param>
/// <param name="QemuGetsItWrong">QEMU 7.2 itself writes this scenario wrongly (its bugs 2 and 4), so its image is no reference.</param>
public sealed record Scenario(string Name, string CreateOptions, string Size, string? Backing, string BackingSize,
    string[] BackingCommands, string[] Commands, bool QemuGetsItWrong = false)
{
    public override string ToString() => Name;

    public static readonly Scenario[] All =
    [
        new("unaligned", "", "8M", null, "", [],
            ["write -P 0x11 1000 3000", "write -P 0x22 65000 70000", "write -P 0x33 130001 1", "write -P 0x34 7M 511", "write -P 0x35 8387584 512"]),
        new("cluster-and-l2-boundaries", "-o cluster_size=4k,table_size=2", "16M", null, "", [],
            ["write -P 0x44 4190000 10000", "write -P 0x45 8388000 300000", "write -P 0x46 4095 2", "write -P 0x47 12582911 4098"]),
        new("multi-mib", "", "16M", null, "", [],
            ["write -P 0x66 1M 5M", "write -P 0x67 3146851 2M", "write -P 0x68 9M 6M"]),
        new("zero-clusters", "", "8M", null, "", [],
            ["write -P 0x12 0 1M", "write -z 64k 128k", "write -z 500k 10k", "write -z 2M 1M", "write -P 0x13 2M 4k"]),
        new("raw-backing", "-b base.raw -F raw", "4M", "raw", "4M", ["write -P 0x55 0 4M"],
            ["write -P 0x01 1000 2000", "write -z 64k 64k", "write -P 0x02 200k 100k", "write -z 1M 100k", "write -P 0x03 4190000 4304"]),
        new("qed-backing", "-b base.qed -F qed", "4M", "qed", "4M", ["write -P 0x56 0 3M", "write -z 1M 64k"],
            ["write -P 0x04 70000 5000", "write -z 2M 128k", "write -P 0x05 3M 64k", "write -P 0x06 1M 10"]),
        new("short-backing", "-b base.raw -F raw", "4M", "raw", "1537k", ["write -P 0x77 0 1537k"],
            ["write -P 0x07 1572000 4000", "write -P 0x08 3M 4k", "write -P 0x09 100 100"]),
        // QEMU 7.2 overwrites L2[4096] here and loses the data at 16M (its bug 2); ours must not.
        new("4k-clusters-16-tables-16M-write", "-o cluster_size=4k,table_size=16", "64M", null, "", [],
            ["write -P 0x5b 16M 64k", "write -P 0x5a 0 16M", "write -P 0x5c 40M 4k"], QemuGetsItWrong: true),
        // The specification says a partial write into a zero cluster fills zeroes; QEMU 7.2 copies the backing file (bug 4).
        new("zero-cluster-over-backing-then-partial-write", "-b base.raw -F raw", "1M", "raw", "1M", ["write -P 0x55 0 1M"],
            ["write -z 0 128k", "write -P 0xaa 0 4k", "write -P 0xab 70000 100"], QemuGetsItWrong: true),
    ];

    /// <summary>Makes the backing file (if any) with qemu-img and qemu-io.</summary>
    public void BuildBacking(TempDir dir)
    {
        if (Backing is null) return;
        Tool.Ok(dir.QemuImg("create", "-f", Backing, $"base.{Backing}", BackingSize));
        if (BackingCommands.Length > 0) Tool.Ok(dir.QemuIo(["-f", Backing, .. C(BackingCommands), $"base.{Backing}"]));
    }

    /// <summary>Creates the empty QED image <paramref name="name"/> with <paramref name="create"/> (qed or qemu-img).</summary>
    public void CreateImage(TempDir dir, string name, Func<string[], ToolResult> create)
    {
        string[] options = CreateOptions.Length == 0 ? [] : CreateOptions.Split(' ');
        Tool.Ok(create(["create", "-f", "qed", .. options, name, Size]));
    }

    /// <summary>
    /// Builds <c>ref.raw</c>: the backing content (cut or zero-extended to the image size) with the commands applied.
    /// </summary>
    public void BuildReference(TempDir dir)
    {
        Tool.Ok(dir.QemuImg("create", "-f", "raw", "ref.raw", Size));
        if (Backing != null)
        {
            // Copy the backing file's guest content (it may be QED) into the model, then fix the size.
            Tool.Ok(dir.QemuImg("convert", "-O", "raw", $"base.{Backing}", "ref.raw"));
            Tool.Ok(dir.QemuImg("resize", "-f", "raw", "ref.raw", Size));
        }
        Tool.Ok(dir.QemuIo(["-f", "raw", .. C(Commands), "ref.raw"]));
    }

    /// <summary>read -P commands derived from the model: one per written range whose final content is one byte value.</summary>
    public string[] VerifyCommands(TempDir dir)
    {
        byte[] model = dir.Bytes("ref.raw");
        var reads = new List<string>();
        foreach (string command in Commands)
        {
            string[] words = command.Split(' ');
            long offset = Num(words[^2]), length = Num(words[^1]);
            var range = model.AsSpan((int)offset, (int)length);
            if (range.IndexOfAnyExcept(range[0]) < 0) reads.Add($"read -P 0x{range[0]:x2} {offset} {length}");
        }
        Assert.NotEmpty(reads);
        return reads.ToArray();
    }

    /// <summary>Turns commands into -c arguments.</summary>
    public static string[] C(IEnumerable<string> commands) => commands.SelectMany(c => new[] { "-c", c }).ToArray();

    private static long Num(string text) =>
        text[^1] switch
        {
            'k' => long.Parse(text[..^1]) << 10,
            'M' => long.Parse(text[..^1]) << 20,
            _ => long.Parse(text),
        };
}
