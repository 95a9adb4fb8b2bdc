using System.Runtime.InteropServices;

namespace Qed.Cli.Io;

/// <summary>qemu-io's abort and sigraise end the process by a signal, as a crash would; .NET has no call for that.</summary>
internal static partial class NativeSignals
{
    [DllImport("libc", EntryPoint = "raise")]
    private static extern int RaiseSignal(int signal);

    [DllImport("libc", EntryPoint = "abort")]
    private static extern void Abort();

    /// <summary>Raises <paramref name="signal"/> in this process; returns false when the signal number is invalid.</summary>
    public static bool Raise(int signal) => RaiseSignal(signal) == 0;

    /// <summary>Ends the process with SIGABRT, leaving files as a crash would.</summary>
    public static void AbortProcess() => Abort();
}
