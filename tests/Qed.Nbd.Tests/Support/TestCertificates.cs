using System.Security.Cryptography.X509Certificates;

namespace Qed.Nbd.Tests.Support;

/// <summary>
/// A CA and a server certificate for 127.0.0.1/localhost, made with openssl at test time, laid out as QEMU's
/// tls-creds-x509 and libnbd's tls-certificates expect (ca-cert.pem, server-cert.pem, server-key.pem).
/// </summary>
internal static class TestCertificates
{
    public static async Task<string> CreateAsync(TempDir dir)
    {
        string d = Path.Combine(dir.Path, "pki");
        Directory.CreateDirectory(d);
        string P(string n) => Path.Combine(d, n);
        await File.WriteAllTextAsync(P("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n");
        await Tool.CheckAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", P("ca-key.pem"), "-out", P("ca-cert.pem"), "-days", "2", "-subj", "/CN=qed test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        await Tool.CheckAsync("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", P("server-key.pem"), "-out", P("server.csr"), "-subj", "/CN=localhost");
        await Tool.CheckAsync("openssl", "x509", "-req", "-in", P("server.csr"), "-CA", P("ca-cert.pem"), "-CAkey", P("ca-key.pem"),
            "-CAcreateserial", "-out", P("server-cert.pem"), "-days", "2", "-extfile", P("ext.cnf"));
        return d;
    }

    public static X509Certificate2 Load(string dir) =>
        X509Certificate2.CreateFromPemFile(Path.Combine(dir, "server-cert.pem"), Path.Combine(dir, "server-key.pem"));
}
