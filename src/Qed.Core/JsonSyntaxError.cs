namespace Qed;

/// <summary>
/// Words the first syntax error of a <c>json:</c> image name as qemu does ("JSON parse error, premature EOI",
/// "... invalid keyword 'x'", "Expecting at most one JSON value"), so scripts that read qemu-img's messages read
/// ours. Called only for text the JSON parser refused; walks the text once with qemu's grammar (strings in double or
/// single quotes) and names the first thing wrong.
/// </summary>
internal static class JsonSyntaxError
{
    /// <summary>The message for <paramref name="text"/>, or null when no error of a known kind is found.</summary>
    public static string? Describe(string text)
    {
        var walker = new Walker(text);
        try
        {
            walker.SkipSpace();
            if (walker.AtEnd) return "Expecting a JSON value";
            walker.Value();
            walker.SkipSpace();
            return walker.AtEnd ? null : "Expecting at most one JSON value";
        }
        catch (FormatException e)
        {
            return "JSON parse error, " + e.Message;
        }
    }

    private sealed class Walker(string text)
    {
        private int _at;

        public bool AtEnd => _at >= text.Length;

        public void SkipSpace()
        {
            while (!AtEnd && text[_at] is ' ' or '\t' or '\r' or '\n') _at++;
        }

        public void Value()
        {
            SkipSpace();
            if (AtEnd) throw new FormatException("premature EOI");
            char c = text[_at];
            if (c == '{') Object();
            else if (c == '[') Array();
            else if (c is '"' or '\'') String();
            else if (char.IsAsciiLetter(c)) Keyword();
            else if (c == '-' || char.IsAsciiDigit(c)) Number();
            else throw new FormatException("expecting value");
        }

        private void Object()
        {
            _at++;
            SkipSpace();
            if (!AtEnd && text[_at] == '}') { _at++; return; }
            while (true)
            {
                SkipSpace();
                if (AtEnd) throw new FormatException("premature EOI");
                if (text[_at] is not ('"' or '\'')) { Value(); throw new FormatException("expecting value"); }
                String();
                SkipSpace();
                if (AtEnd) throw new FormatException("premature EOI");
                if (text[_at] != ':') throw new FormatException("missing : in object pair");
                _at++;
                Value();
                if (!Separator('}')) return;
            }
        }

        private void Array()
        {
            _at++;
            SkipSpace();
            if (!AtEnd && text[_at] == ']') { _at++; return; }
            do Value(); while (Separator(']'));
        }

        /// <summary>After a member: true at a comma (another follows), false at the closing bracket.</summary>
        private bool Separator(char close)
        {
            SkipSpace();
            if (AtEnd) throw new FormatException("premature EOI");
            char c = text[_at++];
            if (c == ',') return true;
            if (c == close) return false;
            throw new FormatException("expecting value");
        }

        private void String()
        {
            char quote = text[_at];
            for (int i = _at + 1; i < text.Length; i++)
            {
                if (text[i] == '\\') { i++; continue; }
                if (text[i] == quote) { _at = i + 1; return; }
            }
            throw new FormatException($"stray '{text[_at..]}'");
        }

        private void Keyword()
        {
            int start = _at;
            while (!AtEnd && char.IsAsciiLetterOrDigit(text[_at])) _at++;
            string word = text[start.._at];
            if (word is not ("true" or "false" or "null")) throw new FormatException($"invalid keyword '{word}'");
        }

        private void Number()
        {
            _at++;
            while (!AtEnd && (char.IsAsciiDigit(text[_at]) || text[_at] is '.' or 'e' or 'E' or '+' or '-')) _at++;
        }
    }
}
