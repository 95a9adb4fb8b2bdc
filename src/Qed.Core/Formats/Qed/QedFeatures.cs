namespace Qed.Formats.Qed;

/// <summary>Bits of the QED header's <c>features</c> field.</summary>
[Flags]
public enum QedFeatures : ulong
{
    /// <summary>No features.</summary>
    None = 0,
    /// <summary>The image has a backing file, named in the header.</summary>
    BackingFile = 1,
    /// <summary>The image may be inconsistent and must be checked before it is written.</summary>
    NeedCheck = 2,
    /// <summary>The backing file is raw: never probe its format.</summary>
    BackingFormatNoProbe = 4,
    /// <summary>Every bit this implementation understands; any other bit makes the image unreadable.</summary>
    Known = BackingFile | NeedCheck | BackingFormatNoProbe,
}
