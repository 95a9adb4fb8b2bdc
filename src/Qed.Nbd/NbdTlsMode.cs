namespace Qed.Nbd;

/// <summary>How a server treats TLS; fixed for the lifetime of every connection.</summary>
public enum NbdTlsMode
{
    /// <summary>No TLS: STARTTLS gets ERR_POLICY.</summary>
    Off,
    /// <summary>TLS offered but optional (open to downgrade by a man in the middle; prefer <see cref="Required"/>).</summary>
    Optional,
    /// <summary>Every option but STARTTLS and ABORT gets ERR_TLS_REQD until TLS is up; EXPORT_NAME disconnects.</summary>
    Required,
}
