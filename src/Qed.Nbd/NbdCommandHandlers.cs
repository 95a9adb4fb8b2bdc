using System.Buffers;
using System.Buffers.Binary;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// Runs the session's validated requests against its export. Each handler runs on its own, owns the request slot
/// it was started with (released when it ends) and its payload buffer and budget, and queues exactly one reply
/// (one or more chunks, the last marked DONE). Failures of the image become errno replies (<see cref="ErrorFor"/>).
/// </summary>
internal sealed class NbdCommandHandlers
{
    private static readonly ReadOnlyMemory<byte> ZeroBlock = new byte[1024 * 1024];

    private readonly NbdSession _session;
    private readonly NbdReplies _replies;
    private readonly ByteBudget _budget;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationToken _stop;

    /// <summary>Handlers for <paramref name="session"/>; each releases one of <paramref name="slots"/> when it ends.</summary>
    public NbdCommandHandlers(NbdSession session, NbdReplies replies, ByteBudget budget, SemaphoreSlim slots, CancellationToken stop)
    {
        _session = session;
        _replies = replies;
        _budget = budget;
        _slots = slots;
        _stop = stop;
    }

    /// <summary>READ: the caller holds a slot and <c>r.Length</c> bytes of budget, which pass to the reply.</summary>
    public async Task ReadAsync(NbdRequest r)
    {
        int length = (int)r.Length;
        bool structured = _replies.Structured;
        // Structured: one OFFSET_DATA chunk (header + u64 offset) for the whole range, which also honours DF.
        int header = structured ? NbdReplies.ChunkHeaderSize + 8 : NbdReplies.SimpleHeaderSize;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(header + length);
        bool queued = false;
        try
        {
            if (length == 0)
            {
                _replies.Done(r);
                return;
            }
            await _session.Export.Image.ReadAsync((long)r.Offset, buffer.AsMemory(header, length)).ConfigureAwait(false);
            if (structured)
            {
                NbdReplies.WriteChunkHeader(buffer, NbdChunk.FlagDone, NbdChunk.OffsetData, r.Cookie, (uint)(8 + length));
                BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(NbdReplies.ChunkHeaderSize), r.Offset);
            }
            else
            {
                NbdReplies.WriteSimpleHeader(buffer, 0, r.Cookie);
            }
            _replies.Writer.Enqueue(buffer, header + length, length);
            queued = true;
        }
        catch (Exception e)
        {
            _replies.Error(r, ErrorFor(e), "read failed");
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

    /// <summary>WRITE: the caller holds a slot and <c>r.Length</c> bytes of budget for <paramref name="payload"/> (pooled), all given back here.</summary>
    public async Task WriteAsync(NbdRequest r, byte[] payload)
    {
        var image = _session.Export.Image;
        try
        {
            await image.WriteAsync((long)r.Offset, payload.AsMemory(0, (int)r.Length)).ConfigureAwait(false);
            // FUA: no reply until the write is durable.
            if ((r.Flags & NbdCommandFlags.Fua) != 0) await image.FlushAsync().ConfigureAwait(false);
            _replies.Done(r);
        }
        catch (Exception e)
        {
            _replies.Error(r, ErrorFor(e), "write failed");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
            _budget.Release(r.Length);
            _slots.Release();
        }
    }

    /// <summary>FLUSH, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS: the caller holds a slot.</summary>
    public async Task ExecuteAsync(NbdRequest r)
    {
        try
        {
            var image = _session.Export.Image;
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
                        if ((r.Flags & NbdCommandFlags.FastZero) != 0) { _replies.Error(r, NbdError.ENOTSUP, "fast zero not possible with NO_HOLE"); return; }
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
                    await BlockStatusAsync(r).ConfigureAwait(false);
                    return;
            }
            _replies.Done(r);
        }
        catch (Exception e)
        {
            _replies.Error(r, ErrorFor(e), "request failed");
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>One BLOCK_STATUS chunk per selected meta context, the last marked DONE.</summary>
    private async Task BlockStatusAsync(NbdRequest r)
    {
        bool one = (r.Flags & NbdCommandFlags.ReqOne) != 0;
        var contexts = _session.MetaContexts;
        // Compute every context's answer first so a failure is reported as one error, not after a partial reply.
        var answers = new List<(uint Id, List<(uint Length, uint Flags)> Extents)>(contexts.Count);
        foreach (uint id in contexts)
            answers.Add((id, await BlockStatusBuilder.BuildAsync(_session.Export.Image, id, (long)r.Offset, r.Length, one, _stop).ConfigureAwait(false)));
        for (int i = 0; i < answers.Count; i++)
        {
            var (id, extents) = answers[i];
            int payload = 4 + 8 * extents.Count;
            byte[] buffer = ArrayPool<byte>.Shared.Rent(NbdReplies.ChunkHeaderSize + payload);
            NbdReplies.WriteChunkHeader(buffer, i == answers.Count - 1 ? NbdChunk.FlagDone : (ushort)0, NbdChunk.BlockStatus, r.Cookie, (uint)payload);
            var span = buffer.AsSpan(NbdReplies.ChunkHeaderSize);
            BinaryPrimitives.WriteUInt32BigEndian(span, id);
            for (int k = 0; k < extents.Count; k++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(4 + 8 * k)..], extents[k].Length);
                BinaryPrimitives.WriteUInt32BigEndian(span[(8 + 8 * k)..], extents[k].Flags);
            }
            _replies.Writer.Enqueue(buffer, NbdReplies.ChunkHeaderSize + payload);
        }
    }

    /// <summary>The errno for a failed image call; ENOTSUP never escapes here (it is reserved for FAST_ZERO).</summary>
    private static uint ErrorFor(Exception e) => e switch
    {
        ArgumentOutOfRangeException => NbdError.EINVAL,
        // A corrupt image, or one that refuses writes until checked because it was found corrupt (an
        // ImageNeedsCheckException, which is an ImageFormatException): an I/O error, as qemu-nbd reports it.
        ImageFormatException => NbdError.EIO,
        InvalidOperationException => NbdError.EPERM,     // DiskImage.CheckWritable: the image is read-only
        IOException io when (io.HResult & 0xffff) is 28 or 27 or 122 => NbdError.ENOSPC, // ENOSPC, EFBIG, EDQUOT
        OperationCanceledException => NbdError.ESHUTDOWN,
        _ => NbdError.EIO,
    };
}
