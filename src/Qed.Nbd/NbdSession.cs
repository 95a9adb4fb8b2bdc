namespace Qed.Nbd;

/// <summary>
/// What the handshake settled for the transmission phase: the export chosen, whether structured replies are on,
/// and the meta contexts selected for that export (ids from <see cref="Protocol.NbdMetaContext"/>, in the order
/// BLOCK_STATUS answers them). Fixed once transmission starts.
/// </summary>
internal sealed record NbdSession(NbdExport Export, bool Structured, IReadOnlyList<uint> MetaContexts);
