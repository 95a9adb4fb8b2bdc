namespace Qed.Tests;

/// <summary><see cref="SizeParser"/>: qemu-img's sizes, and its two kinds of refusal, each naming the text.</summary>
public class SizeParserTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("512", 512L)]
    [InlineData("1b", 1L)]
    [InlineData("4k", 4096L)]
    [InlineData("1.1k", 1126L)]              // 1126.4, to the nearest byte as qemu-img
    [InlineData("0.9999k", 1024L)]           // 1023.9
    [InlineData("4095.9999999999999k", 4194304L)]
    [InlineData("1.5T", 1649267441664L)]
    [InlineData(" 5.", 5L)]
    [InlineData("7E", 8070450532247928832L)]
    [InlineData("9223372036854775807", long.MaxValue)]
    public void Parses(string text, long bytes)
    {
        Assert.Equal(SizeParseError.None, SizeParser.TryParse(text, long.MaxValue, out long got));
        Assert.Equal(bytes, got);
        Assert.Equal(bytes, SizeParser.Parse(text));
    }

    [Theory]
    [InlineData("99999999999999999999T", (int)SizeParseError.Invalid)]
    [InlineData("18446744073709551616k", (int)SizeParseError.Invalid)]
    [InlineData("1.5", (int)SizeParseError.Invalid)]
    [InlineData("2.5b", (int)SizeParseError.Invalid)]
    [InlineData("-1", (int)SizeParseError.Invalid)]
    [InlineData("", (int)SizeParseError.Invalid)]
    [InlineData("1x", (int)SizeParseError.Invalid)]
    [InlineData("1kk", (int)SizeParseError.Invalid)]
    [InlineData(".5k", (int)SizeParseError.Invalid)]
    [InlineData("8E", (int)SizeParseError.OutOfRange)]
    [InlineData("16E", (int)SizeParseError.OutOfRange)]
    [InlineData("9223372036854775808", (int)SizeParseError.OutOfRange)]
    [InlineData("18446744073709551616", (int)SizeParseError.OutOfRange)]
    [InlineData("99999999999999999999", (int)SizeParseError.OutOfRange)]
    public void RefusesWithTheKind(string text, int kindValue) // an int: SizeParseError is internal, a public test cannot take it
    {
        var kind = (SizeParseError)kindValue;
        Assert.Equal(kind, SizeParser.TryParse(text, long.MaxValue, out long bytes));
        Assert.Equal(0, bytes);
        Assert.False(SizeParser.TryParse(text, out _));
        Exception e = kind == SizeParseError.Invalid ? Assert.Throws<FormatException>(() => SizeParser.Parse(text)) : Assert.Throws<OverflowException>(() => SizeParser.Parse(text));
        Assert.Contains($"'{text}'", e.Message);
    }

    [Fact]
    public void ANamedSettingFailsInQemuImgsWordsWithTheValue()
    {
        Assert.Equal(int.MaxValue, SizeParser.Parse("2147483647", "buffer size", int.MaxValue));
        Assert.Equal("Invalid buffer size specified: '2G' is out of range. Must be between 0 and 2147483647.",
            Assert.Throws<OverflowException>(() => SizeParser.Parse("2G", "buffer size", int.MaxValue)).Message);
        Assert.Equal("Invalid offset specified: 'abc'. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
            Assert.Throws<FormatException>(() => SizeParser.Parse("abc", "offset", long.MaxValue)).Message);
    }
}
