using System.Buffers.Binary;
using System.Text;
using Qed.Formats.Qcow2;
using Qed.Storage;
using Qed.Formats.Qed;

namespace Qed.Operations;

/// <summary>
/// Changes the backing file fields of a closed qcow2 image (rebase -u): the header's name offset and size, the backing
/// format extension, and the name after the extensions, all in the first cluster, written in one write and flushed.
/// Other header extensions are kept byte for byte; bytes of an older, longer name or extension area are zeroed.
/// </summary>
internal static class Qcow2BackingEditor
{
    /// <summary>Rewrites the backing fields; with <paramref name="dryRun"/> only checks that it can.</summary>
    /// <exception cref="ArgumentException">The name and extensions do not fit in the first cluster.</exception>
    /// <exception cref="NotSupportedException">The image is marked dirty or corrupt.</exception>
    public static async Task SetBackingAsync(string path, string? name, string? format, bool dryRun, CancellationToken ct)
    {
        await using var file = FileStorage.Open(path, writable: !dryRun);
        var first = new byte[4096]; // reads past the end of a short file give zeroes, which Validate refuses
        await file.ReadAsync(0, first, ct).ConfigureAwait(false);
        var header = Qcow2Header.Parse(first);
        header.Validate(file.Length);
        if ((header.IncompatibleFeatures & (Qcow2IncompatibleFeatures.Dirty | Qcow2IncompatibleFeatures.Corrupt)) != 0)
            throw new NotSupportedException($"Could not change the backing file of '{path}': it is marked dirty or corrupt (run 'qemu-img check -r all' first)");
        if (format != null && !QedImage.KnownFormats.Contains(format))
            throw new ArgumentException($"Unknown backing file format '{format}' (known: qed, raw, qcow2)");

        int cs = header.ClusterSize;
        var cluster = new byte[cs];
        await file.ReadAsync(0, cluster, ct).ConfigureAwait(false);
        int start = (int)header.HeaderLength;
        int limit = header.HasBackingFile && header.BackingFileOffset >= (ulong)start && header.BackingFileOffset < (ulong)cs
            ? (int)header.BackingFileOffset : cs;

        // Keep every extension but the backing format one, in order.
        var kept = new List<byte[]>();
        int at = start;
        while (at + 8 <= limit)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(at));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(at + 4));
            if (type == Qcow2HeaderExtensions.EndType) break;
            int padded = 8 + (int)((length + 7) & ~7u);
            if (padded > limit - at)
                throw new ImageFormatException($"qcow2 header extension 0x{type:x8} at file offset {at} runs past the header area", "header_extension", at);
            if (type != Qcow2HeaderExtensions.BackingFormatType) kept.Add(cluster.AsSpan(at, padded).ToArray());
            at += padded;
        }
        int oldEnd = Math.Max(at + 8, header.HasBackingFile ? (int)Math.Min((ulong)cs, header.BackingFileOffset + header.BackingFileSize) : 0);

        byte[] nameBytes = Encoding.UTF8.GetBytes(name ?? "");
        byte[]? formatBytes = nameBytes.Length > 0 && format != null ? Encoding.UTF8.GetBytes(format) : null;
        var area = new MemoryStream();
        if (formatBytes != null)
        {
            var ext = new byte[8 + ((formatBytes.Length + 7) & ~7)];
            BinaryPrimitives.WriteUInt32BigEndian(ext, Qcow2HeaderExtensions.BackingFormatType);
            BinaryPrimitives.WriteUInt32BigEndian(ext.AsSpan(4), (uint)formatBytes.Length);
            formatBytes.CopyTo(ext, 8);
            area.Write(ext);
        }
        foreach (var ext in kept) area.Write(ext);
        area.Write(new byte[8]); // end marker
        int nameOffset = start + (int)area.Length;
        if (nameOffset + nameBytes.Length > cs || nameBytes.Length > Qcow2Header.MaxBackingNameLength)
            throw new ArgumentException($"Could not change the backing file to '{(name!.Length > 60 ? name[..60] + "..." : name)}': with the header extensions it does not fit in the {cs}-byte first cluster of '{path}'");
        if (dryRun) return;

        var updated = header with
        {
            BackingFileOffset = nameBytes.Length > 0 ? (ulong)nameOffset : 0,
            BackingFileSize = (uint)nameBytes.Length,
        };
        var buffer = new byte[Math.Max(oldEnd, nameOffset + nameBytes.Length)];
        cluster.AsSpan(0, start).CopyTo(buffer);
        updated.WriteTo(buffer);
        area.ToArray().CopyTo(buffer, start);
        nameBytes.CopyTo(buffer, nameOffset);
        await file.WriteAsync(0, buffer, ct).ConfigureAwait(false);
        await file.FlushAsync(ct).ConfigureAwait(false);
    }
}
