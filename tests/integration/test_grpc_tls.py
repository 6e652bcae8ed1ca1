#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd's gRPC listener with TLS and mutual TLS, against python3-grpcio.
Certificates (a CA, the server's with SANs localhost and 127.0.0.1, a
client's, and a stranger CA's) are made with openssl at test time."""
import os, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
import test_grpc as T
from taplib import run, tmpdir

_certs = None


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(d, name, ca, cn, ext):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    T.write(os.path.join(d, f"{name}.ext"), ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


def certs():
    global _certs
    if _certs is None:
        d = tmpdir()
        for ca in ("ca", "stranger"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                    "-subj", f"/CN=vps test {ca}", cwd=d)
        make_cert(d, "server", "ca", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        make_cert(d, "client", "ca", "tool.example",
                  "extendedKeyUsage=clientAuth\n")
        make_cert(d, "intruder", "stranger", "intruder.example",
                  "extendedKeyUsage=clientAuth\n")
        _certs = d
    return _certs


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def channel(port, ca="ca", client=None):
    g = T.stubs()["grpc"]
    d = certs()
    creds = g.ssl_channel_credentials(
        root_certificates=read(d, f"{ca}.pem"),
        private_key=read(d, f"{client}.key") if client else None,
        certificate_chain=read(d, f"{client}.pem") if client else None)
    return g.secure_channel(f"localhost:{port}", creds)


def tls_lines(mutual=False, admin_mtls=False):
    d = certs()
    s = f"tls_cert = {d}/server.pem\ntls_key = {d}/server.key\n"
    if mutual:
        s += f"tls_client_ca = {d}/ca.pem\n"
    if admin_mtls:
        s += "admin_mtls = true\n"
    return s


def connect(ch, sid="t1", timeout=10):
    P = T.stubs()["P"]
    return T.unary(ch, "/vps.v1.Policy/Check",
                   P.CheckRequest(session_id=sid, stage=P.STAGE_CONNECT,
                                  client=P.Client(ip="192.0.2.66")),
                   P.CheckResponse, timeout=timeout)


def stats(ch):
    A = T.stubs()["A"]
    return T.unary(ch, "/vps.v1.Admin/Stats", A.StatsRequest(), A.StatsResponse, timeout=10)


def test_tls():
    v = T.Vpsd(grpc_extra=tls_lines(), admin=False)
    v.wait_log(", TLS)")
    r = connect(channel(v.port))
    assert r.result.code == 554, r
    # plaintext to a TLS port, and a client that trusts another CA: no call
    g = T.stubs()["grpc"]
    code, _ = T.status_of(lambda: connect(g.insecure_channel(f"127.0.0.1:{v.port}"), timeout=3))
    assert code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), code
    code, _ = T.status_of(lambda: connect(channel(v.port, ca="stranger"), timeout=3))
    assert code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), code
    # Admin: no admin listener and no admin_mtls: refused
    code, _ = T.status_of(lambda: stats(channel(v.port)))
    assert code == "PERMISSION_DENIED", code
    assert v.stop() == 0


def test_mutual_tls_admin():
    v = T.Vpsd(grpc_extra=tls_lines(mutual=True, admin_mtls=True), admin=False)
    v.wait_log("mutual TLS")
    ch = channel(v.port, client="client")
    assert connect(ch).result.code == 554
    st = stats(ch)
    assert st.generation == 1
    # without a certificate, or with one from another CA: no handshake
    code, _ = T.status_of(lambda: connect(channel(v.port), timeout=3))
    assert code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), code
    code, _ = T.status_of(lambda: connect(channel(v.port, client="intruder"), timeout=3))
    assert code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), code
    assert v.stop() == 0


def test_mutual_tls_without_admin_mtls():
    v = T.Vpsd(grpc_extra=tls_lines(mutual=True), admin=False)
    v.wait_log("mutual TLS")
    ch = channel(v.port, client="client")
    assert connect(ch).result.code == 554
    code, _ = T.status_of(lambda: stats(ch))
    assert code == "PERMISSION_DENIED", code
    assert v.stop() == 0


def test_bad_tls_config_refused():
    d = certs()
    cases = [
        ("admin_mtls = true\n", "admin_mtls needs tls_client_ca"),
        (f"tls_cert = {d}/server.pem\n", "tls_key"),
        (f"tls_cert = {d}/nope.pem\ntls_key = {d}/server.key\n", "tls_cert"),
        (f"tls_cert = {d}/server.pem\ntls_key = {d}/server.key\ntls_client_ca = {d}/nope.pem\n",
         "tls_client_ca"),
    ]
    for extra, want in cases:
        w = tmpdir()
        T.write(os.path.join(w, "rules.vsl"), T.RULES)
        T.write(os.path.join(w, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 1
[quarantine]
dir = q
names = spam
[connector slowpoke]
type = test
[grpc]
listen = 127.0.0.1:{T.free_port()}
{extra}""")
        p = subprocess.run([T.VPSD, "-c", os.path.join(w, "vps.conf")], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1, (extra, p.returncode, p.stderr)
        assert want in p.stderr, (extra, p.stderr)


if __name__ == "__main__":
    T.stubs()
    certs()
    run([test_tls, test_mutual_tls_admin, test_mutual_tls_without_admin_mtls,
         test_bad_tls_config_refused])
