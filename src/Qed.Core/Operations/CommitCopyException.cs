namespace Qed.Operations;

/// <summary>
/// A commit failed while copying into the base (a read of the image or a layer between, or a write or flush of the
/// base), after the base was opened for writing: qemu-img's "Block job failed". The base may hold part of the
/// image's data; the image itself is unchanged and still reads as before. The cause is the inner exception, and the
/// message is its message.
/// </summary>
public sealed class CommitCopyException : IOException
{
    /// <summary>Creates the exception for a copy into <paramref name="basePath"/> that failed with <paramref name="inner"/>.</summary>
    public CommitCopyException(string basePath, Exception inner) : base(inner.Message, inner) => BasePath = basePath;

    /// <summary>The base the commit was writing into.</summary>
    public string BasePath { get; }
}
