namespace Qed.Nbd.Protocol;

// Numeric values from the NBD protocol (the NBD project's doc/proto.md; digest in docs/nbd.md); all integers on the wire are big-endian.

/// <summary>Magic numbers that frame the handshake and transmission phases.</summary>
internal static class NbdMagic
{
    public const ulong NbdMagicValue = 0x4e42444d41474943;   // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054;        // "IHAVEOPT"
    public const ulong OptionReply = 0x3e889045565a9;
    public const uint Request = 0x25609513;
    public const uint ExtendedRequest = 0x21e41c71;
    public const uint SimpleReply = 0x67446698;
    public const uint StructuredReply = 0x668e33ef;
}

/// <summary>Handshake flags (server, u16) and client flags (u32).</summary>
internal static class NbdHandshakeFlags
{
    public const ushort FixedNewstyle = 1;
    public const ushort NoZeroes = 2;
    public const uint ClientFixedNewstyle = 1;
    public const uint ClientNoZeroes = 2;
}

/// <summary>Option numbers (NBD_OPT_*).</summary>
internal static class NbdOption
{
    public const uint ExportName = 1;
    public const uint Abort = 2;
    public const uint List = 3;
    public const uint StartTls = 5;
    public const uint Info = 6;
    public const uint Go = 7;
    public const uint StructuredReply = 8;
    public const uint ListMetaContext = 9;
    public const uint SetMetaContext = 10;
    public const uint ExtendedHeaders = 11;
}

/// <summary>Option reply types (NBD_REP_*); errors have bit 31 set.</summary>
internal static class NbdRep
{
    public const uint Ack = 1;
    public const uint Server = 2;
    public const uint Info = 3;
    public const uint MetaContext = 4;
    public const uint ErrUnsup = 0x80000001;
    public const uint ErrPolicy = 0x80000002;
    public const uint ErrInvalid = 0x80000003;
    public const uint ErrPlatform = 0x80000004;
    public const uint ErrTlsReqd = 0x80000005;
    public const uint ErrUnknown = 0x80000006;
    public const uint ErrShutdown = 0x80000007;
    public const uint ErrBlockSizeReqd = 0x80000008;
    public const uint ErrTooBig = 0x80000009;
}

/// <summary>Info types carried in NBD_REP_INFO.</summary>
internal static class NbdInfo
{
    public const ushort Export = 0;
    public const ushort Name = 1;
    public const ushort Description = 2;
    public const ushort BlockSize = 3;
}

/// <summary>Transmission flags (u16) advertised per export.</summary>
[Flags]
internal enum NbdTransmissionFlags : ushort
{
    HasFlags = 0x0001,
    ReadOnly = 0x0002,
    SendFlush = 0x0004,
    SendFua = 0x0008,
    Rotational = 0x0010,
    SendTrim = 0x0020,
    SendWriteZeroes = 0x0040,
    SendDf = 0x0080,
    CanMultiConn = 0x0100,
    SendCache = 0x0400,
    SendFastZero = 0x0800,
}

/// <summary>Command types (NBD_CMD_*).</summary>
internal static class NbdCommand
{
    public const ushort Read = 0;
    public const ushort Write = 1;
    public const ushort Disc = 2;
    public const ushort Flush = 3;
    public const ushort Trim = 4;
    public const ushort Cache = 5;
    public const ushort WriteZeroes = 6;
    public const ushort BlockStatus = 7;
}

/// <summary>Command flags (NBD_CMD_FLAG_*).</summary>
internal static class NbdCommandFlags
{
    public const ushort Fua = 1 << 0;
    public const ushort NoHole = 1 << 1;
    public const ushort Df = 1 << 2;
    public const ushort ReqOne = 1 << 3;
    public const ushort FastZero = 1 << 4;
}

/// <summary>Structured reply chunk types and flags.</summary>
internal static class NbdChunk
{
    public const ushort FlagDone = 1;
    public const ushort None = 0;
    public const ushort OffsetData = 1;
    public const ushort OffsetHole = 2;
    public const ushort BlockStatus = 5;
    public const ushort Error = 32769;
    public const ushort ErrorOffset = 32770;
}

/// <summary>Error values on the wire (errno numbers as the protocol fixes them).</summary>
internal static class NbdError
{
    public const uint EPERM = 1;
    public const uint EIO = 5;
    public const uint ENOMEM = 12;
    public const uint EINVAL = 22;
    public const uint ENOSPC = 28;
    public const uint EOVERFLOW = 75;
    public const uint ENOTSUP = 95;
    public const uint ESHUTDOWN = 108;
}

/// <summary>Meta contexts this server offers and the ids it assigns them.</summary>
internal static class NbdMetaContext
{
    public const string BaseAllocation = "base:allocation";
    public const string AllocationDepth = "qemu:allocation-depth";
    public const uint BaseAllocationId = 1;
    public const uint AllocationDepthId = 2;
    public const uint StateHole = 1;
    public const uint StateZero = 2;
}
