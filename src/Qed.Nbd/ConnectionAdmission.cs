namespace Qed.Nbd;

/// <summary>
/// The two bounds on a server's connections. A connection is accepted only into a free handshake place and keeps it
/// while it negotiates; when it picks an export (GO or EXPORT_NAME) it waits for a served place, then gives the
/// handshake place back. So clients that connect and never finish their handshake can fill only the handshake
/// places (and are dropped at the handshake limit), never the places of clients being served; and a served client
/// that goes quiet never keeps a new client from negotiating.
/// </summary>
internal sealed class ConnectionAdmission(int served, int handshakes)
{
    private readonly SemaphoreSlim _handshakes = new(handshakes, handshakes);
    private readonly SemaphoreSlim _served = new(served, served);

    /// <summary>Waits for a handshake place; the accept loop takes one before each accept.</summary>
    public Task WaitToAcceptAsync(CancellationToken cancellationToken) => _handshakes.WaitAsync(cancellationToken);

    /// <summary>Moves a negotiating connection to a served place, waiting for one; on cancellation it keeps its handshake place.</summary>
    public async Task AdmitAsync(CancellationToken cancellationToken)
    {
        await _served.WaitAsync(cancellationToken).ConfigureAwait(false);
        _handshakes.Release();
    }

    /// <summary>Gives back the place a connection holds: served once <see cref="AdmitAsync"/> returned, else its handshake place.</summary>
    public void Leave(bool admitted) => (admitted ? _served : _handshakes).Release();
}
