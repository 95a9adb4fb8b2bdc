using Qed.Storage;

namespace Qed.Formats.Qed.Maintenance;

/// <summary>
/// Emptying: unmaps every guest cluster and gives the space back, so the image reads through to its backing file (or
/// as zeroes without one). Commit empties an image this way once its base durably holds what the image showed.
/// </summary>
/// <remarks>
/// Runs with the request gate paused (<see cref="RequestGate"/>), so no request holds a file offset from the mapping.
/// Crash ordering: dirty metadata is written back and synced first, so what is on disk is what memory holds; then
/// every L1 entry is cleared (each in its sector) and synced; only then is the file cut after the header and the L1
/// table. A crash before that sync leaves some tables linked and some not, each linked one intact (a cluster is freed
/// only by the truncation after it); a crash after leaves an empty image, at worst with the unreferenced tail not yet
/// cut (leaked clusters). Over a base that holds the same data every one of those states reads the same.
/// State: none; everything goes through the owners' methods.
/// </remarks>
internal sealed class Emptier(IBlockStorage file, QedGeometry geometry, L1Table l1, L2TableCache cache,
    EntryValidator validator, ClusterAllocator allocator, MetadataWriteBack writeBack, FailureLatch latch, RequestGate gate)
{
    private readonly QedGeometry _g = geometry;

    /// <summary>Empties the image; see <see cref="QedImage.EmptyAsync"/>.</summary>
    public async Task EmptyAsync(CancellationToken cancellationToken)
    {
        latch.ThrowIfFailed();
        await gate.PauseAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            latch.ThrowIfFailed();
            await writeBack.WriteBackAsync().ConfigureAwait(false);
            await file.FlushAsync().ConfigureAwait(false);
            await cache.AwaitLoadsAsync().ConfigureAwait(false);

            writeBack.NoteMappingChanged();
            for (int i = 0; i < l1.Length; i++)
            {
                ulong tableOffset = l1[i];
                if (tableOffset == 0) continue;
                await writeBack.WriteL1EntryAsync(i, 0).ConfigureAwait(false);
                cache.Drop(i);
                validator.RemoveTable((long)tableOffset);
            }
            await file.FlushAsync().ConfigureAwait(false); // every entry cleared on disk before any cluster is freed

            // Nothing is referenced now but the header and the L1 table: the map's end is where they end.
            var map = await ReferenceMap.BuildAsync(_g, l1, cache, validator, allocator, latch).ConfigureAwait(false);
            await allocator.TruncateToAsync(_g.OffsetOf(map.End)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            latch.Record(e); // memory and disk may disagree: stop writing until the image is checked
            throw;
        }
        finally
        {
            gate.Resume();
        }
    }
}
