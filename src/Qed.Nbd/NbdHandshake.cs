using System.Buffers.Binary;
using System.Net.Security;
using System.Security.Authentication;
using System.Text;
using Qed.Nbd.Protocol;

namespace Qed.Nbd;

/// <summary>
/// The fixed-newstyle handshake (the option haggling): greeting, client flags, then options until GO or EXPORT_NAME
/// picks an export. Owns everything negotiated so far, which STARTTLS resets (CVE-2021-3716 was a plaintext
/// STRUCTURED_REPLY injected before STARTTLS that survived it), and the stream while it may still become TLS.
/// Option replies are written and flushed one by one; a protocol violation throws <see cref="NbdProtocolException"/>.
/// </summary>
internal sealed class NbdHandshake
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly NbdInput _input;
    private readonly NbdServerOptions _options;
    private readonly Func<ValueTask> _admit;
    private readonly CancellationToken _stop;
    private bool _noZeroes;
    private bool _structured;
    private bool _tlsActive;
    private string? _metaExportName;
    private readonly List<uint> _metaContexts = [];

    /// <summary>
    /// Negotiates over <paramref name="stream"/>, reading through <paramref name="input"/> (which reads from it);
    /// <paramref name="admit"/> takes a served place once the client has chosen an export, before the reply that
    /// starts transmission.
    /// </summary>
    public NbdHandshake(Stream stream, NbdInput input, NbdServerOptions options, Func<ValueTask> admit, CancellationToken stop)
    {
        Stream = stream;
        _input = input;
        _options = options;
        _admit = admit;
        _stop = stop;
    }

    /// <summary>The connection's stream: the one given, or the TLS stream over it once STARTTLS succeeded.</summary>
    public Stream Stream { get; private set; }

    /// <summary>Runs the handshake; returns what it settled, or null when the client aborted or left.</summary>
    public async Task<NbdSession?> RunAsync()
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdMagic.NbdMagicValue);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes);
        await SendAsync(greeting).ConfigureAwait(false);

        if (!await _input.EnsureAsync(4).ConfigureAwait(false)) return null;
        uint clientFlags = _input.ReadUInt32(0);
        _input.Consume(4);
        if ((clientFlags & ~(NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes)) != 0)
            throw new NbdProtocolException($"Unknown client flags 0x{clientFlags:x}.");
        _noZeroes = (clientFlags & NbdHandshakeFlags.ClientNoZeroes) != 0;

        while (true)
        {
            if (!await _input.EnsureAsync(16).ConfigureAwait(false)) return null;
            ulong magic = _input.ReadUInt64(0);
            uint option = _input.ReadUInt32(8);
            uint length = _input.ReadUInt32(12);
            if (magic != NbdMagic.IHaveOpt) throw new NbdProtocolException($"Bad option magic 0x{magic:x}.");
            if (length > NbdLimits.MaxOptionLength) throw new NbdProtocolException($"Option {option} claims {length} bytes of data.");
            _input.Consume(16);
            var data = new byte[length];
            await _input.CopyToAsync(data).ConfigureAwait(false);

            if (_options.TlsMode == NbdTlsMode.Required && !_tlsActive && option is not (NbdOption.StartTls or NbdOption.Abort))
            {
                // EXPORT_NAME cannot carry an error, so the only answer is to hang up.
                if (option == NbdOption.ExportName) throw new NbdProtocolException("EXPORT_NAME before TLS on a TLS-only server.");
                await SendOptionErrorAsync(option, NbdRep.ErrTlsReqd, "TLS is required").ConfigureAwait(false);
                continue;
            }

            switch (option)
            {
                case NbdOption.ExportName:
                {
                    var export = FindExport(DecodeName(data)) ?? throw new NbdProtocolException("EXPORT_NAME for an unknown export.");
                    await _admit().ConfigureAwait(false);
                    var reply = new byte[_noZeroes ? 10 : 134];
                    BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Image.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)TransmissionFlags(export));
                    await SendAsync(reply).ConfigureAwait(false);
                    return Settle(export);
                }
                case NbdOption.Abort:
                    try { await SendOptionReplyAsync(option, NbdRep.Ack, []).ConfigureAwait(false); }
                    catch (IOException) { } // the client may close without waiting for the ACK
                    return null;
                case NbdOption.List:
                    await ListAsync(data).ConfigureAwait(false);
                    break;
                case NbdOption.StartTls:
                    await StartTlsAsync(data).ConfigureAwait(false);
                    break;
                case NbdOption.Info:
                case NbdOption.Go:
                {
                    var export = await InfoAsync(option, data).ConfigureAwait(false);
                    if (export != null && option == NbdOption.Go) return Settle(export);
                    break;
                }
                case NbdOption.StructuredReply:
                    if (data.Length != 0) { await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "STRUCTURED_REPLY takes no data").ConfigureAwait(false); break; }
                    _structured = true;
                    await SendOptionReplyAsync(option, NbdRep.Ack, []).ConfigureAwait(false);
                    break;
                case NbdOption.ListMetaContext:
                case NbdOption.SetMetaContext:
                    await MetaContextAsync(option, data).ConfigureAwait(false);
                    break;
                default:
                    // Includes EXTENDED_HEADERS (11): refused until fully implemented; clients fall back.
                    await SendOptionErrorAsync(option, NbdRep.ErrUnsup, "option not supported").ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>
    /// The session for <paramref name="export"/>. SET_META_CONTEXT names an export; contexts chosen for another one
    /// do not carry over.
    /// </summary>
    private NbdSession Settle(NbdExport export)
    {
        if (_metaExportName != export.Name) _metaContexts.Clear();
        return new NbdSession(export, _structured, [.. _metaContexts]);
    }

    private NbdExport? FindExport(string? name)
    {
        if (name is null) return null;
        foreach (var e in _options.Exports)
            if (e.Name == name) return e;
        return name.Length == 0 ? _options.Exports[0] : null;
    }

    /// <summary>A name or query string: strict UTF-8, no NUL, at most <see cref="NbdLimits.MaxString"/> bytes; else null.</summary>
    public static string? DecodeName(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > NbdLimits.MaxString || bytes.Contains((byte)0)) return null;
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { return null; }
    }

    private NbdTransmissionFlags TransmissionFlags(NbdExport export)
    {
        // One DiskImage per export, shared by every connection, flushed as one: CAN_MULTI_CONN is honest.
        var flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua |
                    NbdTransmissionFlags.SendCache | NbdTransmissionFlags.CanMultiConn;
        if (export.ReadOnly) flags |= NbdTransmissionFlags.ReadOnly;
        else flags |= NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero;
        // DF only with structured replies (every READ is answered with one data chunk anyway).
        if (_structured) flags |= NbdTransmissionFlags.SendDf;
        return flags;
    }

    private async ValueTask ListAsync(byte[] data)
    {
        if (data.Length != 0) { await SendOptionErrorAsync(NbdOption.List, NbdRep.ErrInvalid, "LIST takes no data").ConfigureAwait(false); return; }
        foreach (var e in _options.Exports)
        {
            byte[] name = Encoding.UTF8.GetBytes(e.Name);
            byte[] description = e.Description is null ? [] : Encoding.UTF8.GetBytes(e.Description);
            var reply = new byte[4 + name.Length + description.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, (uint)name.Length);
            name.CopyTo(reply, 4);
            description.CopyTo(reply, 4 + name.Length);
            await SendOptionReplyAsync(NbdOption.List, NbdRep.Server, reply).ConfigureAwait(false);
        }
        await SendOptionReplyAsync(NbdOption.List, NbdRep.Ack, []).ConfigureAwait(false);
    }

    private async ValueTask StartTlsAsync(byte[] data)
    {
        if (data.Length != 0) { await SendOptionErrorAsync(NbdOption.StartTls, NbdRep.ErrInvalid, "STARTTLS takes no data").ConfigureAwait(false); return; }
        if (_options.TlsMode == NbdTlsMode.Off) { await SendOptionErrorAsync(NbdOption.StartTls, NbdRep.ErrPolicy, "TLS is not configured").ConfigureAwait(false); return; }
        if (_tlsActive) { await SendOptionErrorAsync(NbdOption.StartTls, NbdRep.ErrInvalid, "TLS is already active").ConfigureAwait(false); return; }
        await SendOptionReplyAsync(NbdOption.StartTls, NbdRep.Ack, []).ConfigureAwait(false);

        var ssl = new SslStream(Stream, leaveInnerStreamOpen: false);
        await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificate = _options.Certificate,
            ClientCertificateRequired = false,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        }, _stop).ConfigureAwait(false);
        Stream = ssl;
        await _input.ResetAsync(ssl).ConfigureAwait(false);
        _tlsActive = true;
        _structured = false;
        _metaContexts.Clear();
        _metaExportName = null;
    }

    /// <summary>INFO and GO: replies with the export's details; returns the export, or null after an error reply.</summary>
    private async ValueTask<NbdExport?> InfoAsync(uint option, byte[] data)
    {
        if (data.Length < 6) { await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "request too short").ConfigureAwait(false); return null; }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > NbdLimits.MaxString || 4 + (long)nameLength + 2 > data.Length)
        {
            await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "bad name length").ConfigureAwait(false);
            return null;
        }
        int n = (int)nameLength;
        int count = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + n));
        if (4 + n + 2 + 2 * count != data.Length)
        {
            await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "bad information request count").ConfigureAwait(false);
            return null;
        }
        string? name = DecodeName(data.AsSpan(4, n));
        if (name is null) { await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "export name is not valid UTF-8").ConfigureAwait(false); return null; }
        var export = FindExport(name);
        if (export is null) { await SendOptionErrorAsync(option, NbdRep.ErrUnknown, "no such export").ConfigureAwait(false); return null; }

        if (option == NbdOption.Go) await _admit().ConfigureAwait(false);

        bool wantName = false, wantDescription = false;
        for (int i = 0; i < count; i++)
        {
            switch (BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + n + 2 + 2 * i)))
            {
                case NbdInfo.Name: wantName = true; break;
                case NbdInfo.Description: wantDescription = true; break;
            }
        }

        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, NbdInfo.Export);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Image.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), (ushort)TransmissionFlags(export));
        await SendOptionReplyAsync(option, NbdRep.Info, info).ConfigureAwait(false);
        if (wantName) await SendInfoStringAsync(option, NbdInfo.Name, export.Name).ConfigureAwait(false);
        if (wantDescription && export.Description != null) await SendInfoStringAsync(option, NbdInfo.Description, export.Description).ConfigureAwait(false);
        // Sent unasked too (allowed): any offset works, 4 KiB is efficient, 32 MiB is the most one request may carry.
        var blockSize = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(blockSize, NbdInfo.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), 1);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), NbdLimits.PreferredBlock);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), NbdLimits.MaxPayload);
        await SendOptionReplyAsync(option, NbdRep.Info, blockSize).ConfigureAwait(false);
        await SendOptionReplyAsync(option, NbdRep.Ack, []).ConfigureAwait(false);
        return export;
    }

    private ValueTask SendInfoStringAsync(uint option, ushort type, string value)
    {
        byte[] text = Encoding.UTF8.GetBytes(value);
        var payload = new byte[2 + text.Length];
        BinaryPrimitives.WriteUInt16BigEndian(payload, type);
        text.CopyTo(payload, 2);
        return SendOptionReplyAsync(option, NbdRep.Info, payload);
    }

    /// <summary>LIST_META_CONTEXT and SET_META_CONTEXT.</summary>
    private async ValueTask MetaContextAsync(uint option, byte[] data)
    {
        bool set = option == NbdOption.SetMetaContext;
        if (set)
        {
            // SET replaces the previous selection even when it fails.
            _metaContexts.Clear();
            _metaExportName = null;
            if (!_structured) { await SendOptionErrorAsync(option, NbdRep.ErrInvalid, "structured replies not negotiated").ConfigureAwait(false); return; }
        }
        var parsed = MetaContextQuery.Parse(data, out uint error, out string message);
        if (parsed is null) { await SendOptionErrorAsync(option, error, message).ConfigureAwait(false); return; }
        var (exportName, queries) = parsed.Value;
        var export = FindExport(exportName);
        if (export is null) { await SendOptionErrorAsync(option, NbdRep.ErrUnknown, "no such export").ConfigureAwait(false); return; }

        var matches = MetaContextQuery.Match(queries, set);
        foreach (uint id in matches)
        {
            byte[] name = Encoding.ASCII.GetBytes(MetaContextQuery.NameOf(id));
            var reply = new byte[4 + name.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, set ? id : 0);
            name.CopyTo(reply, 4);
            await SendOptionReplyAsync(option, NbdRep.MetaContext, reply).ConfigureAwait(false);
        }
        if (set)
        {
            _metaContexts.AddRange(matches);
            _metaExportName = export.Name;
        }
        await SendOptionReplyAsync(option, NbdRep.Ack, []).ConfigureAwait(false);
    }

    private ValueTask SendOptionErrorAsync(uint option, uint error, string message) =>
        SendOptionReplyAsync(option, error, Encoding.UTF8.GetBytes(message));

    private async ValueTask SendOptionReplyAsync(uint option, uint type, byte[] data)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply, 20);
        await SendAsync(reply).ConfigureAwait(false);
    }

    private async ValueTask SendAsync(byte[] bytes)
    {
        await Stream.WriteAsync(bytes, _stop).ConfigureAwait(false);
        await Stream.FlushAsync(_stop).ConfigureAwait(false);
    }
}
