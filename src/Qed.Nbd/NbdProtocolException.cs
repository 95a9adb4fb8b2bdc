namespace Qed.Nbd;

/// <summary>A client broke the protocol in a way the spec answers with a hard disconnect.</summary>
internal sealed class NbdProtocolException(string message) : Exception(message);
