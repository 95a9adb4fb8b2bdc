namespace Qed;

/// <summary>
/// The advice that error messages give for repairing an image, in the library's terms (the API to call, not a command
/// to type). Each is one fixed phrase so that the qed tool can put qemu-img's words in its place
/// (<see cref="ForTool"/>): the library names API calls, the tool keeps printing what it printed before.
/// </summary>
internal static class RepairAdvice
{
    /// <summary>After "the image 'X' ": the image must be checked and repaired before it is written to again.</summary>
    public const string NeedsRepair = "needs repairing with ImageFile.CheckAsync and CheckRepair.All";

    /// <summary>After "open it read-only or ": how to clear a qcow2 image's corrupt bit.</summary>
    public const string RepairIt = "repair it with ImageFile.CheckAsync and CheckRepair.All";

    /// <summary>In parentheses: rebuilding a dirty qcow2 image's refcounts.</summary>
    public const string RebuildRefcounts = "(ImageFile.CheckAsync with CheckRepair.All)";

    /// <summary>In parentheses: where to look after a write found corruption.</summary>
    public const string SeeCheck = "(see ImageFile.CheckAsync)";

    private static readonly (string Api, string Tool)[] s_toolWords =
    [
        (NeedsRepair, "needs 'qed check -r all'"),
        (RepairIt, "repair it with 'qemu-img check -r all'"),
        (RebuildRefcounts, "('qemu-img check -r all')"),
        (SeeCheck, "(see 'qemu-img check')"),
    ];

    /// <summary>The message with each API phrase replaced by the command the qed tool's users type.</summary>
    public static string ForTool(string message)
    {
        foreach (var (api, tool) in s_toolWords)
            if (message.Contains(api, StringComparison.Ordinal)) message = message.Replace(api, tool, StringComparison.Ordinal);
        return message;
    }
}
