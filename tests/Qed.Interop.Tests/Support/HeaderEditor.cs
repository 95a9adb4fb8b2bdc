using System.Buffers.Binary;

namespace Qed.Interop.Tests.Support;

/// <summary>Pokes little-endian header fields of an image file, to make bad or dirty images.</summary>
public static class HeaderEditor
{
    public static void SetU32(string path, int offset, uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        Write(path, offset, bytes);
    }

    public static void SetU64(string path, int offset, ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        Write(path, offset, bytes);
    }

    private static void Write(string path, int offset, byte[] bytes)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        file.Position = offset;
        file.Write(bytes);
    }
}
