namespace Qed;

/// <summary>What a defragmentation did to the file.</summary>
/// <param name="FileBytesBefore">The file's length before.</param>
/// <param name="FileBytesAfter">The file's length after: header, L1, the L2 tables and the referenced data clusters.</param>
public sealed record DefragResult(long FileBytesBefore, long FileBytesAfter);
