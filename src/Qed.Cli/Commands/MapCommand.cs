using System.CommandLine;
using System.Globalization;
using System.Text;

namespace Qed.Cli.Commands;

/// <summary><c>qed map [-f fmt] [--output=human|json] [--start-offset N] [--max-length N] FILE</c>, as qemu-img map.</summary>
internal static class MapCommand
{
    public static Command Build()
    {
        var format = new Option<string?>("-f") { Description = "Image format (probed if omitted)" };
        var output = OutputOption.Create();
        var start = new Option<string?>("--start-offset", "-s") { Description = "First guest offset to map (suffixes k, M, G allowed)" };
        var maxLength = new Option<string?>("--max-length", "-l") { Description = "Bytes to map at most" };
        var forceShare = ImageArgs.ForceShareOption();
        var imageOpts = ImageOptsArgs.Option();
        var file = new Argument<string>("FILE");
        var command = new Command("map", "Show which ranges hold data, zeroes or backing data, and where") { format, output, start, maxLength, forceShare, imageOpts, file };
        CliRunner.SetAction(command, async (parse, ct) =>
        {
            var (path, fmt) = ImageOptsArgs.Resolve(parse.GetValue(file)!, parse.GetValue(imageOpts), parse.GetValue(format));
            await using var image = await ImageArgs.OpenAsync(path, fmt, readOnly: true, ct: ct, forceShare: parse.GetValue(forceShare));
            long offset = parse.GetValue(start) is { } s ? ParseSize("--start-offset", s) : 0;
            long length = image.Size - Math.Min(offset, image.Size);
            if (parse.GetValue(maxLength) is { } l) length = Math.Min(length, ParseSize("--max-length", l));
            offset = Math.Min(offset, image.Size);

            bool json = OutputOption.IsJson(parse, output);
            var stdout = Console.Out;
            if (!json) stdout.Write($"{"Offset",-16}{"Length",-16}{"Mapped to",-16}File\n");
            bool first = true;
            var line = new StringBuilder();
            await foreach (var e in AllocationMap.EnumerateAsync(image, offset, length, ct))
            {
                line.Clear();
                if (json)
                {
                    line.Append(first ? "[" : ",\n");
                    AppendJson(line, e.Offset, e.Length, e.Depth, e.Present, e.Zero, e.Data, e.FileOffset);
                }
                else if (e.Data && e.FileOffset >= 0)
                {
                    line.Append($"{Hex(e.Offset),-16}{Hex(e.Length),-16}{Hex(e.FileOffset),-16}{e.Layer?.Name}\n");
                }
                stdout.Write(line.ToString());
                first = false;
            }
            if (json)
            {
                if (first)
                {
                    // An empty range still prints one entry, as qemu-img does for a 0-byte image.
                    line.Clear().Append('[');
                    AppendJson(line, offset, 0, 0, false, false, false, -1);
                    stdout.Write(line.ToString());
                }
                stdout.Write("]\n");
            }
            return 0;
        });
        return command;
    }

    private static void AppendJson(StringBuilder sb, long start, long length, int depth, bool present, bool zero, bool data, long offset)
    {
        sb.Append("{ \"start\": ").Append(JsonText.Number(start))
          .Append(", \"length\": ").Append(JsonText.Number(length))
          .Append(", \"depth\": ").Append(depth)
          .Append(", \"present\": ").Append(JsonText.Bool(present))
          .Append(", \"zero\": ").Append(JsonText.Bool(zero))
          .Append(", \"data\": ").Append(JsonText.Bool(data));
        if (offset >= 0) sb.Append(", \"offset\": ").Append(JsonText.Number(offset));
        sb.Append('}');
    }

    // qemu-img prints %#x: 0 without a prefix, anything else as 0x...
    private static string Hex(long value) => value == 0 ? "0" : "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static long ParseSize(string name, string text) =>
        SizeParser.TryParse(text, out long n) ? n : throw new CommandException($"Invalid {name} specified: '{text}'");
}
