using Qed.Formats.Qed;
using System.CommandLine;
using System.Text;
using Qed.Operations;

namespace Qed.Cli.Commands;

/// <summary><c>qed info [-f fmt] [--output=human|json] [--backing-chain] [-U] FILE</c>, as qemu-img info.</summary>
internal static class InfoCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var output = OutputOption.Create();
        var chain = new Option<bool>("--backing-chain") { Description = "Describe every image of the backing chain" };
        var forceShare = ImageArgs.ForceShareOption();
        var file = new Argument<string>("FILE");
        var imageOpts = ImageOptsArgs.Option();
        var command = new Command("info", "Show an image's size, format, backing file and dirty state") { format, output, chain, forceShare, imageOpts, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var (path, fmt) = ImageOptsArgs.Resolve(parse.GetValue(file)!, parse.GetValue(imageOpts), parse.GetValue(format));
            bool withChain = parse.GetValue(chain);
            // Like qemu-img, info on one image does not need its backing file: it still works when that is missing.
            await using var image = await OpenAsync(path, fmt, withChain, parse.GetValue(forceShare), ct);
            var layers = withChain ? ImageInfo.DescribeChain(image, path) : [ImageInfo.Describe(image, path)];
            bool json = OutputOption.IsJson(parse, output);
            var text = new StringBuilder();
            if (json && withChain)
            {
                text.Append("[\n");
                for (int i = 0; i < layers.Count; i++)
                    text.Append(Json(layers[i], "    ")).Append(i + 1 < layers.Count ? ",\n" : "\n");
                text.Append("]\n");
            }
            else if (json)
            {
                text.Append(Json(layers[0], "")).Append('\n');
            }
            else
            {
                for (int i = 0; i < layers.Count; i++)
                {
                    if (i > 0) text.Append('\n');
                    text.Append(Human(layers[i]));
                }
            }
            Console.Out.Write(text.ToString());
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Opens the image (with its chain for --backing-chain). qemu-img opens each layer of the chain by itself, so a
    /// backing file in use is named as the file that could not be opened, not as the overlay's backing file.
    /// </summary>
    private static async Task<DiskImage> OpenAsync(string path, string? format, bool withChain, bool forceShare, CancellationToken ct)
    {
        try
        {
            return await ImageArgs.OpenAsync(path, format, readOnly: true, noBacking: !withChain, ct, forceShare: forceShare);
        }
        catch (CommandException e) when (withChain && CliRunner.Find<ImageLockedException>(e) is { } locked && locked.FileName != path)
        {
            const string Backing = "Could not open backing file: ";
            string reason = locked.Reason;
            while (reason.StartsWith(Backing, StringComparison.Ordinal)) reason = reason[Backing.Length..];
            throw new CommandException($"Could not open '{locked.FileName}': {reason}", locked);
        }
    }

    /// <summary>qemu-img 7.2's object: its keys in its order, indented by four spaces (more inside a chain).</summary>
    private static string Json(ImageInfo info, string indent)
    {
        var fields = new List<(string Key, string Value)>();
        if (info.BackingFilenameFormatName != null) fields.Add(("backing-filename-format", JsonText.String(info.BackingFilenameFormatName)));
        fields.Add(("virtual-size", JsonText.Number(info.VirtualSize)));
        fields.Add(("filename", JsonText.String(info.Filename)));
        if (info.ClusterSize is { } cs) fields.Add(("cluster-size", JsonText.Number(cs)));
        fields.Add(("format", JsonText.String(info.Format.Name())));
        if (info.ActualSize is { } actual) fields.Add(("actual-size", JsonText.Number(actual)));
        if (info.Qcow2 is { } qcow2) fields.Add(("format-specific", Qcow2Json(qcow2, indent + "    ")));
        if (info.FullBackingFilename != null) fields.Add(("full-backing-filename", JsonText.String(info.FullBackingFilename)));
        if (info.BackingFilename != null) fields.Add(("backing-filename", JsonText.String(info.BackingFilename)));
        fields.Add(("dirty-flag", JsonText.Bool(info.DirtyFlag)));
        if (info.RecoveryRecord is { } record) fields.Add(("recovery-record", RecoveryRecordJson(record, indent)));

        var sb = new StringBuilder();
        sb.Append(indent).Append("{\n");
        for (int i = 0; i < fields.Count; i++)
            sb.Append(indent).Append("    ").Append(JsonText.String(fields[i].Key)).Append(": ").Append(fields[i].Value)
              .Append(i + 1 < fields.Count ? ",\n" : "\n");
        sb.Append(indent).Append('}');
        return sb.ToString();
    }

    private static string Human(ImageInfo info)
    {
        var sb = new StringBuilder();
        sb.Append("image: ").Append(info.Filename).Append('\n');
        sb.Append("file format: ").Append(info.Format.Name()).Append('\n');
        sb.Append("virtual size: ").Append(HumanSize.Format(info.VirtualSize)).Append(" (").Append(info.VirtualSize).Append(" bytes)\n");
        sb.Append("disk size: ").Append(info.ActualSize is { } actual ? HumanSize.Format(actual) : "unavailable").Append('\n');
        if (info.ClusterSize is { } cs) sb.Append("cluster_size: ").Append(cs).Append('\n');
        if (info.Qcow2 != null && info.DirtyFlag) sb.Append("cleanly shut down: no\n"); // qemu-img's line for the qcow2 dirty bit
        if (info.BackingFilename != null)
        {
            sb.Append("backing file: ").Append(info.BackingFilename);
            if (info.FullBackingFilename is null) sb.Append(" (cannot determine actual path)");
            else if (info.FullBackingFilename != info.BackingFilename) sb.Append(" (actual path: ").Append(info.FullBackingFilename).Append(')');
            sb.Append('\n');
            if (info.BackingFilenameFormatName != null) sb.Append("backing file format: ").Append(info.BackingFilenameFormatName).Append('\n');
        }
        if (info.Qcow2 is { } qcow2) sb.Append(Qcow2Human(qcow2));
        // qemu-img leaves the dirty state out of its text; ours is the true NEED_CHECK bit, worth a line when set.
        if (info.DirtyFlag && info.Qcow2 is null) sb.Append("dirty flag: yes (NEED_CHECK is set: the image needs a consistency check)\n");
        if (info.RecoveryRecord is { } record) sb.Append(RecoveryRecordLine(record)).Append('\n');
        return sb.ToString();
    }

    /// <summary>qemu-img 7.2's qcow2 data fields, in its order and with its names; version 2 lacks the feature bits.</summary>
    private static List<(string Json, string Text, string Value, string JsonValue)> Qcow2Fields(Formats.Qcow2.Qcow2FormatInfo q)
    {
        var fields = new List<(string, string, string, string)>
        {
            ("compat", "compat", q.Compat, JsonText.String(q.Compat)),
            ("compression-type", "compression type", q.CompressionType, JsonText.String(q.CompressionType)),
        };
        if (q.LazyRefcounts is { } lazy) fields.Add(("lazy-refcounts", "lazy refcounts", Bool(lazy), JsonText.Bool(lazy)));
        fields.Add(("refcount-bits", "refcount bits", q.RefcountBits.ToString(), JsonText.Number(q.RefcountBits)));
        if (q.Corrupt is { } corrupt) fields.Add(("corrupt", "corrupt", Bool(corrupt), JsonText.Bool(corrupt)));
        if (q.ExtendedL2 is { } extended) fields.Add(("extended-l2", "extended l2", Bool(extended), JsonText.Bool(extended)));
        return fields;

        static string Bool(bool b) => b ? "true" : "false";
    }

    /// <summary>The <c>"format-specific"</c> object of a qcow2 layer; <paramref name="indent"/> is its key's indentation.</summary>
    private static string Qcow2Json(Formats.Qcow2.Qcow2FormatInfo q, string indent)
    {
        var fields = Qcow2Fields(q);
        var sb = new StringBuilder("{\n");
        sb.Append(indent).Append("    \"type\": \"qcow2\",\n");
        sb.Append(indent).Append("    \"data\": {\n");
        for (int i = 0; i < fields.Count; i++)
            sb.Append(indent).Append("        ").Append(JsonText.String(fields[i].Json)).Append(": ").Append(fields[i].JsonValue)
              .Append(i + 1 < fields.Count ? ",\n" : "\n");
        sb.Append(indent).Append("    }\n");
        sb.Append(indent).Append('}');
        return sb.ToString();
    }

    /// <summary>The "Format specific information:" block of a qcow2 layer, four spaces per field.</summary>
    private static string Qcow2Human(Formats.Qcow2.Qcow2FormatInfo q)
    {
        var sb = new StringBuilder("Format specific information:\n");
        foreach (var f in Qcow2Fields(q)) sb.Append("    ").Append(f.Text).Append(": ").Append(f.Value).Append('\n');
        return sb.ToString();
    }

    /// <summary>The QED recovery record (docs/recovery-record.md): qed's own line, shown only while one is on disk.</summary>
    private static string RecoveryRecordLine(QedRecoveryRecordInfo record) => record.Trusted
        ? $"recovery record: {record.TablesInPlay} table(s) in play since the file ended at {record.CleanFileEnd} bytes (a read-write open checks only those)"
        : $"recovery record: not trusted ({record.Problem}; a read-write open checks every table)";

    private static string RecoveryRecordJson(QedRecoveryRecordInfo record, string indent)
    {
        string inner = indent + "        ";
        var sb = new StringBuilder("{\n");
        sb.Append(inner).Append("\"trusted\": ").Append(JsonText.Bool(record.Trusted));
        if (record.Trusted)
        {
            sb.Append(",\n").Append(inner).Append("\"tables-in-play\": ").Append(JsonText.Number(record.TablesInPlay));
            sb.Append(",\n").Append(inner).Append("\"clean-file-end\": ").Append(JsonText.Number(record.CleanFileEnd));
        }
        else
        {
            sb.Append(",\n").Append(inner).Append("\"problem\": ").Append(JsonText.String(record.Problem ?? ""));
        }
        return sb.Append('\n').Append(indent).Append("    }").ToString();
    }
}
