namespace Qed.Nbd;

/// <summary>One parsed 28-byte request header.</summary>
internal readonly record struct NbdRequest(ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length);
