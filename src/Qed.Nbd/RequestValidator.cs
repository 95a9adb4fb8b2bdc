using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// Checks a request against the protocol and the session before anything runs: known flags valid for the command,
/// a range inside the export (overflow-free for any u64 offset), a payload within the limit, no writes to a
/// read-only export, BLOCK_STATUS only with a meta context. Answers 0 or the errno to reply with, and why.
/// </summary>
internal static class RequestValidator
{
    public static (uint Error, string Message) Validate(NbdSession session, in NbdRequest r)
    {
        const ushort known = NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.Df | NbdCommandFlags.ReqOne | NbdCommandFlags.FastZero;
        if ((r.Flags & ~known) != 0) return (NbdError.EINVAL, "unknown command flag");
        ushort allowed = r.Type switch
        {
            NbdCommand.Read => (ushort)(NbdCommandFlags.Fua | (session.Structured ? NbdCommandFlags.Df : 0)),
            NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim or NbdCommand.Cache => NbdCommandFlags.Fua,
            NbdCommand.WriteZeroes => NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.FastZero,
            NbdCommand.BlockStatus => NbdCommandFlags.Fua | NbdCommandFlags.ReqOne,
            _ => ushort.MaxValue,
        };
        if (allowed == ushort.MaxValue) return (NbdError.EINVAL, "unknown command");
        if ((r.Flags & ~allowed) != 0) return (NbdError.EINVAL, "flag not valid for this command");
        if (r.Type == NbdCommand.Flush)
            return r.Offset != 0 || r.Length != 0 ? (NbdError.EINVAL, "flush with offset or length") : (0, "");

        var export = session.Export;
        bool writes = r.Type is NbdCommand.Write or NbdCommand.WriteZeroes or NbdCommand.Trim;
        ulong size = (ulong)export.Image.Size;
        // Unsigned and overflow-free: offset may be anything a u64 holds.
        if (r.Offset > size || r.Length > size - r.Offset)
            return (r.Type is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.ENOSPC : NbdError.EINVAL, "request beyond the end of the export");
        if (r.Type is NbdCommand.Read or NbdCommand.Write && r.Length > NbdLimits.MaxPayload)
            return (NbdError.EINVAL, "request larger than the maximum block size");
        if (writes && export.ReadOnly) return (NbdError.EPERM, "export is read-only");
        if (r.Type == NbdCommand.BlockStatus)
        {
            if (!session.Structured || session.MetaContexts.Count == 0) return (NbdError.EINVAL, "no meta context negotiated");
            if (r.Length == 0) return (NbdError.EINVAL, "block status of zero length");
        }
        return (0, "");
    }
}
