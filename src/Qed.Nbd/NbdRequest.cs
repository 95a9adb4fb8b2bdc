using System.Buffers;

namespace Qed.Nbd;

/// <summary>One parsed 28-byte request header.</summary>
internal readonly record struct NbdRequest(ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length)
{
    /// <summary>The size of a (compact) request header: magic, flags, type, cookie, offset, length.</summary>
    public const int HeaderSize = 28;

    /// <summary>
    /// Parses the header at the start of <paramref name="header"/> (at least <see cref="HeaderSize"/> bytes);
    /// <paramref name="magic"/> is for the caller to check.
    /// </summary>
    public static NbdRequest Parse(in ReadOnlySequence<byte> header, out uint magic)
    {
        var reader = new SequenceReader<byte>(header.Slice(0, HeaderSize));
        reader.TryReadBigEndian(out int m);
        reader.TryReadBigEndian(out short flags);
        reader.TryReadBigEndian(out short type);
        reader.TryReadBigEndian(out long cookie);
        reader.TryReadBigEndian(out long offset);
        reader.TryReadBigEndian(out int length);
        magic = (uint)m;
        return new NbdRequest((ushort)flags, (ushort)type, (ulong)cookie, (ulong)offset, (uint)length);
    }
}
