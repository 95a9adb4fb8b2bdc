using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Storage;

/// <summary>
/// Data and holes found with lseek's SEEK_DATA and SEEK_HOLE, which Linux and macOS both have under different numbers
/// (and libraries): each host passes its own lseek and constants; ENXIO is 6 on both.
/// </summary>
internal static unsafe class SeekRuns
{
    private const int ENXIO = 6;

    /// <summary>
    /// Whether <paramref name="offset"/> is in data or a hole and where that run ends (capped at <paramref name="end"/>);
    /// null when the host cannot tell (no such call, or the filesystem refuses it).
    /// </summary>
    public static (bool IsData, long RunEnd)? FindRun(SafeFileHandle handle, long offset, long end,
        delegate*<SafeFileHandle, long, int, long> lseek, int seekData, int seekHole)
    {
        try
        {
            long data = lseek(handle, offset, seekData);
            if (data < 0)
                return Marshal.GetLastPInvokeError() == ENXIO ? (false, end) : null; // ENXIO: only a hole follows
            if (data > offset) return (false, Math.Min(data, end));
            long hole = lseek(handle, offset, seekHole);
            if (hole < 0) return null;
            return (true, Math.Min(hole, end));
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
    }
}
