namespace Qed.Formats.Qcow2;

/// <summary>Bits of the qcow2 v3 header's <c>incompatible_features</c> field (an unknown bit makes the image unreadable).</summary>
[Flags]
public enum Qcow2IncompatibleFeatures : ulong
{
    /// <summary>No features.</summary>
    None = 0,
    /// <summary>Refcounts may be stale (lazy refcounts were in use); they must be rebuilt before writing.</summary>
    Dirty = 1,
    /// <summary>Some structure may be corrupt: the image must not be written.</summary>
    Corrupt = 2,
    /// <summary>Guest data lives in an external data file.</summary>
    ExternalDataFile = 4,
    /// <summary>Compressed clusters use the compression named by <c>compression_type</c> (not zlib).</summary>
    CompressionType = 8,
    /// <summary>L2 entries are 128 bits with subcluster bitmaps.</summary>
    ExtendedL2 = 16,
    /// <summary>Every bit the specification defines.</summary>
    Known = Dirty | Corrupt | ExternalDataFile | CompressionType | ExtendedL2,
}
