using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

// Command handlers. Each runs on its own, owns its slot (released at the end) and its payload buffer, and queues
// exactly one reply (one or more chunks, the last marked DONE).
internal sealed partial class NbdConnection
{
    private const int SimpleHeaderSize = 16;
    private const int ChunkHeaderSize = 20;
    private static readonly ReadOnlyMemory<byte> ZeroBlock = new byte[1024 * 1024];

    private async Task ReadAsync(NbdExport export, NbdRequest r)
    {
        int length = (int)r.Length;
        // Structured: one OFFSET_DATA chunk (header + u64 offset) for the whole range, which also honours DF.
        int header = _structured ? ChunkHeaderSize + 8 : SimpleHeaderSize;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(header + length);
        bool queued = false;
        try
        {
            if (length == 0)
            {
                SendDone(r);
                return;
            }
            await export.Image.ReadAsync((long)r.Offset, buffer.AsMemory(header, length)).ConfigureAwait(false);
            if (_structured)
            {
                WriteChunkHeader(buffer, NbdChunk.FlagDone, NbdChunk.OffsetData, r.Cookie, (uint)(8 + length));
                BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(ChunkHeaderSize), r.Offset);
            }
            else
            {
                WriteSimpleHeader(buffer, 0, r.Cookie);
            }
            _replies.Enqueue(buffer, header + length, length);
            queued = true;
        }
        catch (Exception e)
        {
            SendError(r, ErrorFor(e), "read failed");
        }
        finally
        {
            if (!queued)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                _budget.Release(length);
            }
            _slots.Release();
        }
    }

    private async Task WriteAsync(NbdExport export, NbdRequest r, byte[] payload)
    {
        try
        {
            await export.Image.WriteAsync((long)r.Offset, payload.AsMemory(0, (int)r.Length)).ConfigureAwait(false);
            // FUA: no reply until the write is durable.
            if ((r.Flags & NbdCommandFlags.Fua) != 0) await export.Image.FlushAsync().ConfigureAwait(false);
            SendDone(r);
        }
        catch (Exception e)
        {
            SendError(r, ErrorFor(e), "write failed");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
            _budget.Release(r.Length);
            _slots.Release();
        }
    }

    private async Task ExecuteAsync(NbdExport export, NbdRequest r)
    {
        try
        {
            var image = export.Image;
            long offset = (long)r.Offset, length = r.Length;
            bool fua = (r.Flags & NbdCommandFlags.Fua) != 0;
            switch (r.Type)
            {
                case NbdCommand.Flush:
                    await image.FlushAsync().ConfigureAwait(false);
                    break;
                case NbdCommand.Trim:
                    if (length > 0) await image.DiscardAsync(offset, length).ConfigureAwait(false);
                    if (fua) await image.FlushAsync().ConfigureAwait(false);
                    break;
                case NbdCommand.WriteZeroes:
                    if ((r.Flags & NbdCommandFlags.NoHole) != 0)
                    {
                        // Zeroes that must stay allocated are plain writes: no faster than WRITE, so FAST_ZERO fails
                        // at once, with the data untouched, as the spec asks.
                        if ((r.Flags & NbdCommandFlags.FastZero) != 0) { SendError(r, NbdError.ENOTSUP, "fast zero not possible with NO_HOLE"); return; }
                        for (long done = 0; done < length;)
                        {
                            int n = (int)Math.Min(ZeroBlock.Length, length - done);
                            await image.WriteAsync(offset + done, ZeroBlock[..n]).ConfigureAwait(false);
                            done += n;
                        }
                    }
                    else if (length > 0)
                    {
                        // Zero clusters in QED, a punched hole in raw: metadata work, so this is the fast path.
                        await image.WriteZeroesAsync(offset, length).ConfigureAwait(false);
                    }
                    if (fua) await image.FlushAsync().ConfigureAwait(false);
                    break;
                case NbdCommand.Cache:
                    // A prefetch hint: walking the allocation map loads the tables the range needs into the cache.
                    for (long pos = offset, end = offset + length; pos < end;)
                        pos += Math.Max(1, (await AllocationMap.GetExtentAsync(image, pos, end - pos).ConfigureAwait(false)).Length);
                    break;
                case NbdCommand.BlockStatus:
                    await BlockStatusAsync(export, r).ConfigureAwait(false);
                    return;
            }
            SendDone(r);
        }
        catch (Exception e)
        {
            SendError(r, ErrorFor(e), "request failed");
        }
        finally
        {
            _slots.Release();
        }
    }

    private async Task BlockStatusAsync(NbdExport export, NbdRequest r)
    {
        bool one = (r.Flags & NbdCommandFlags.ReqOne) != 0;
        // Compute every context's answer first so a failure is reported as one error, not after a partial reply.
        var answers = new List<(uint Id, List<(uint Length, uint Flags)> Extents)>(_metaContexts.Count);
        foreach (uint id in _metaContexts)
            answers.Add((id, await BlockStatusBuilder.BuildAsync(export.Image, id, (long)r.Offset, r.Length, one, _stop.Token).ConfigureAwait(false)));
        for (int i = 0; i < answers.Count; i++)
        {
            var (id, extents) = answers[i];
            int payload = 4 + 8 * extents.Count;
            byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkHeaderSize + payload);
            WriteChunkHeader(buffer, i == answers.Count - 1 ? NbdChunk.FlagDone : (ushort)0, NbdChunk.BlockStatus, r.Cookie, (uint)payload);
            var span = buffer.AsSpan(ChunkHeaderSize);
            BinaryPrimitives.WriteUInt32BigEndian(span, id);
            for (int k = 0; k < extents.Count; k++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(4 + 8 * k)..], extents[k].Length);
                BinaryPrimitives.WriteUInt32BigEndian(span[(8 + 8 * k)..], extents[k].Flags);
            }
            _replies.Enqueue(buffer, ChunkHeaderSize + payload);
        }
    }

    /// <summary>Success without data: a simple reply (allowed for every command but READ), or a NONE chunk for READ.</summary>
    private void SendDone(in NbdRequest r)
    {
        if (_structured && r.Type == NbdCommand.Read)
        {
            byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkHeaderSize);
            WriteChunkHeader(chunk, NbdChunk.FlagDone, NbdChunk.None, r.Cookie, 0);
            _replies.Enqueue(chunk, ChunkHeaderSize);
            return;
        }
        byte[] reply = ArrayPool<byte>.Shared.Rent(SimpleHeaderSize);
        WriteSimpleHeader(reply, 0, r.Cookie);
        _replies.Enqueue(reply, SimpleHeaderSize);
    }

    /// <summary>An error: an ERROR chunk with a short message when structured replies are on (always for READ), else a simple reply.</summary>
    private void SendError(in NbdRequest r, uint error, string message)
    {
        if (!_structured)
        {
            byte[] reply = ArrayPool<byte>.Shared.Rent(SimpleHeaderSize);
            WriteSimpleHeader(reply, error, r.Cookie);
            _replies.Enqueue(reply, SimpleHeaderSize);
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
        _replies.Enqueue(chunk, ChunkHeaderSize + payload);
    }

    private static void WriteSimpleHeader(Span<byte> buffer, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
    }

    private static void WriteChunkHeader(Span<byte> buffer, ushort flags, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[16..], length);
    }

    /// <summary>The errno for a failed image call; ENOTSUP never escapes here (it is reserved for FAST_ZERO).</summary>
    private static uint ErrorFor(Exception e) => e switch
    {
        ArgumentOutOfRangeException => NbdError.EINVAL,
        // A corrupt image, or one that refuses writes until checked because it was found corrupt: an I/O error, as
        // qemu-nbd reports it. Before InvalidOperationException, which ImageNeedsCheckException derives from.
        ImageFormatException or ImageNeedsCheckException => NbdError.EIO,
        InvalidOperationException => NbdError.EPERM,     // DiskImage.CheckWritable: the image is read-only
        IOException io when (io.HResult & 0xffff) is 28 or 27 or 122 => NbdError.ENOSPC, // ENOSPC, EFBIG, EDQUOT
        OperationCanceledException => NbdError.ESHUTDOWN,
        _ => NbdError.EIO,
    };
}
