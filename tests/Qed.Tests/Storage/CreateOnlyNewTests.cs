using Qed.Storage;

namespace Qed.Tests.Storage;

/// <summary>
/// The exclusive create behind <c>ImageFile.ConvertAsync</c>: a name that exists when the file is opened (made by
/// someone after the caller looked) is refused by the open itself and left as it was; a new name is created.
/// </summary>
public sealed class CreateOnlyNewTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("qed-only-new").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void AnExistingFileIsRefusedUntouched()
    {
        string path = Path.Combine(_dir, "there.qed");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.ThrowsAny<IOException>(() => FileStorage.Create(path, FileLockMode.Default, onlyNew: true).Dispose());
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
    }

    [Fact]
    public void ADanglingLinkIsRefusedAndItsTargetNotMade()
    {
        string link = Path.Combine(_dir, "link.qed");
        string target = Path.Combine(_dir, "target.qed");
        File.CreateSymbolicLink(link, target);
        Assert.ThrowsAny<IOException>(() => FileStorage.Create(link, FileLockMode.Default, onlyNew: true).Dispose());
        Assert.False(File.Exists(target));
        Assert.NotNull(new FileInfo(link).LinkTarget);
    }

    [Fact]
    public void ANewNameIsCreated()
    {
        string path = Path.Combine(_dir, "new.qed");
        using (var file = FileStorage.Create(path, FileLockMode.Default, onlyNew: true))
            Assert.True(file.CreatedFile);
        Assert.True(File.Exists(path));
    }
}
