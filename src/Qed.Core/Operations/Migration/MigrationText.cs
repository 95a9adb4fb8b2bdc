namespace Qed.Operations.Migration;

/// <summary>Wording shared by the migration's messages.</summary>
internal static class MigrationText
{
    /// <summary>"1 corruption", "2 corruptions": a count with its noun, plural when it is not one.</summary>
    public static string Count(long count, string noun) => count == 1 ? $"1 {noun}" : $"{count} {noun}s";
}
