using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// The reply encoding of one session: simple replies, or structured chunks once STRUCTURED_REPLY was negotiated,
/// each encoded into a pooled buffer and queued whole on the <see cref="ReplyWriter"/> (which returns the buffer).
/// Every request gets exactly one reply: <see cref="Done"/>, <see cref="Error"/>, or chunks whose last is marked DONE.
/// </summary>
internal sealed class NbdReplies(ReplyWriter writer, bool structured)
{
    /// <summary>A simple reply: magic, error, cookie.</summary>
    public const int SimpleHeaderSize = 16;

    /// <summary>A structured chunk's header: magic, flags, type, cookie, length.</summary>
    public const int ChunkHeaderSize = 20;

    /// <summary>Whether replies are structured.</summary>
    public bool Structured => structured;

    /// <summary>The writer the replies go through.</summary>
    public ReplyWriter Writer => writer;

    /// <summary>Success without data: a simple reply (allowed for every command but READ), or a NONE chunk for READ.</summary>
    public void Done(in NbdRequest r)
    {
        if (structured && r.Type == NbdCommand.Read)
        {
            byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkHeaderSize);
            WriteChunkHeader(chunk, NbdChunk.FlagDone, NbdChunk.None, r.Cookie, 0);
            writer.Enqueue(chunk, ChunkHeaderSize);
            return;
        }
        byte[] reply = ArrayPool<byte>.Shared.Rent(SimpleHeaderSize);
        WriteSimpleHeader(reply, 0, r.Cookie);
        writer.Enqueue(reply, SimpleHeaderSize);
    }

    /// <summary>An error: an ERROR chunk with a short message when structured replies are on (always for READ), else a simple reply.</summary>
    public void Error(in NbdRequest r, uint error, string message)
    {
        if (!structured)
        {
            byte[] reply = ArrayPool<byte>.Shared.Rent(SimpleHeaderSize);
            WriteSimpleHeader(reply, error, r.Cookie);
            writer.Enqueue(reply, SimpleHeaderSize);
            return;
        }
        // QEMU refuses non-data chunks over 1000 bytes; these messages are a few dozen.
        int textLength = Encoding.UTF8.GetByteCount(message);
        int payload = 6 + textLength;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkHeaderSize + payload);
        WriteChunkHeader(chunk, NbdChunk.FlagDone, NbdChunk.Error, r.Cookie, (uint)payload);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(ChunkHeaderSize), error);
        BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(ChunkHeaderSize + 4), (ushort)textLength);
        Encoding.UTF8.GetBytes(message, chunk.AsSpan(ChunkHeaderSize + 6));
        writer.Enqueue(chunk, ChunkHeaderSize + payload);
    }

    /// <summary>Writes a simple reply's header at the start of <paramref name="buffer"/>.</summary>
    public static void WriteSimpleHeader(Span<byte> buffer, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
    }

    /// <summary>Writes a structured chunk's header at the start of <paramref name="buffer"/>.</summary>
    public static void WriteChunkHeader(Span<byte> buffer, ushort flags, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[16..], length);
    }
}
