namespace Qed.Interop.Tests.Packaging;

/// <summary>
/// A fact that needs the .NET SDK's <c>dotnet</c> on PATH. Without it the test is reported as skipped, with the
/// reason; it never passes without running. Everything else it needs (qemu-img) fails the test when missing.
/// </summary>
public sealed class DotnetFactAttribute : FactAttribute
{
    public DotnetFactAttribute()
    {
        if (DotnetCli.Path is null) Skip = "dotnet is not on PATH: install the .NET 10 SDK to run the packaging test";
    }
}
