#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's TLS: STARTTLS with `openssl s_client -starttls smtp` and swaks
--tls, implicit TLS (listen_submissions) with s_client and Python's ssl,
SNI choosing between two certificates, tls_min_version, and the hostile
cases of TESTING.md: plaintext pipelined behind STARTTLS is discarded
(CVE-2011-0411), state is forgotten after the handshake, a second
STARTTLS is refused, garbage instead of a ClientHello and a silent client
end the connection without hurting others.  No client certificate is
ever required."""
import os, re, ssl, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir
from vsmtpdlib import expect, HOSTNAME, Vsmtpd, make_cert, tls_context

_servers = {}


def tls_server(kind="default"):
    """mx listener with STARTTLS (certificate for mx.test, and other.test by
    SNI) and a submissions (implicit TLS) listener; "tls13": the same with
    tls_min_version = TLSv1.3; "short": tls_handshake_timeout = 2s."""
    if kind not in _servers:
        d = tmpdir()
        cert, key = make_cert(d, HOSTNAME)
        ocert, okey = make_cert(d, "other.test", names=("www.other.test",))
        vs = {"tls_cert": cert, "tls_key": key, "tls_sni": f"{ocert}:{okey}",
              "listen_submissions": "127.0.0.1:{submissions_port}"}
        if kind == "tls13":
            vs["tls_min_version"] = "TLSv1.3"
        if kind == "short":
            vs["tls_handshake_timeout"] = "2s"
        _servers[kind] = Vsmtpd(settings={"vsmtpd": vs}, dir=d).start()
    return _servers[kind]


def s_client(args, chunks=("QUIT\n",), delay=0.4, timeout=20):
    """openssl s_client -crlf -ign_eof ARGS; each of chunks is written after
    a pause (so the session is not pipelined: DATA is answered before the
    content comes).  Returns (exit code, stdout + stderr)."""
    p = subprocess.Popen(["openssl", "s_client", "-crlf", "-ign_eof", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        for chunk in chunks:
            time.sleep(delay)
            try:
                p.stdin.write(chunk)
                p.stdin.flush()
            except BrokenPipeError:
                break
        out, _ = p.communicate(timeout=timeout)  # closes stdin; -ign_eof waits for the server
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out


def subject_cn(out):
    m = re.search(r"^subject=.*?CN\s*=\s*([^,/\n]+)", out, re.M)
    return m.group(1).strip() if m else None


def test_starttls_s_client():
    v = tls_server()
    with v.smtp() as c:
        kw = c.ehlo().keywords()
        assert "STARTTLS" in kw, f"no STARTTLS with tls_cert set: {kw}"
    rcpt = "tls-sc@example.org"
    rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-servername",
                        HOSTNAME],
                       ["EHLO client.test\n", "MAIL FROM:<a@example.net>\n", f"RCPT TO:<{rcpt}>\n",
                        "DATA\n", "Subject: over tls\n\ntls body\n.\n", "QUIT\n"])
    assert "Verify return code" in out, out[-3000:]
    assert subject_cn(out) == HOSTNAME, out[:3000]
    m = re.search(r"^\s*Protocol\s*:\s*(TLSv1\.[23])", out, re.M)
    assert m, f"no TLS protocol in s_client output: {out[-3000:]}"
    # inside TLS (s_client shows only that part) EHLO no longer offers STARTTLS
    ehlo = re.findall(r"^250[- ].*$", out, re.M)
    assert ehlo and not any("STARTTLS" in l for l in ehlo), ehlo
    assert re.search(r"^354 ", out, re.M), out[-2000:]
    assert re.search(r"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}", out, re.M), out[-2000:]
    assert re.search(r"^221 2\.0\.0 Bye", out, re.M), out[-2000:]
    got = v.wait_maildir(rcpt)
    head = got[0].split(b"\n\n", 1)[0]
    assert re.search(rb"with ESMTPS id", re.sub(rb"\n[ \t]+", b" ", head)), head


def test_starttls_swaks():
    v = tls_server()
    rcpt = "tls-swaks@example.org"
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{v.port}", "--tls", "--helo",
                        "client.test", "--from", "a@example.net", "--to", rcpt],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert re.search(r"<-\s+220 2\.0\.0 Ready to start TLS", out), out[-3000:]
    assert re.search(r"<~\s+250 2\.0\.0 Ok: queued as [0-9A-F]{16}", out), out[-3000:]
    v.wait_maildir(rcpt)


def test_implicit_tls():
    v = tls_server()
    rc, out = s_client(["-connect", f"127.0.0.1:{v.submissions_port}", "-servername", HOSTNAME],
                       ["EHLO client.test\n", "MAIL FROM:<a@example.net>\n", "QUIT\n"])
    assert re.search(rf"^220 {re.escape(HOSTNAME)} ESMTP vsmtpd", out, re.M), out[-3000:]
    assert subject_cn(out) == HOSTNAME, out[:3000]
    # submissions: AUTH required before MAIL; never STARTTLS inside TLS
    assert re.search(r"^530 5\.7\.0 Authentication required", out, re.M), out[-3000:]
    ehlo = re.findall(r"^250[- ].*$", out, re.M)
    assert ehlo and not any("STARTTLS" in l for l in ehlo), ehlo
    with v.smtp(port=v.submissions_port, tls=True, server_name=HOSTNAME) as c:
        expect(c.greeting, 220, f"{HOSTNAME} ESMTP vsmtpd")
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version()
        kw = c.ehlo().keywords()
        assert "STARTTLS" not in kw, kw
        expect(c.cmd("STARTTLS"), 554, "5.5.1 Error: TLS already active")
        expect(c.cmd("NOOP"), 250)


def test_sni_picks_certificate():
    v = tls_server()
    for name, want in [(HOSTNAME, HOSTNAME), ("other.test", "other.test"),
                       ("www.other.test", "other.test"), ("unknown.test", HOSTNAME)]:
        rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-servername",
                            name])
        assert subject_cn(out) == want, f"SNI {name}: got {subject_cn(out)}\n{out[:2000]}"
        rc, out = s_client(["-connect", f"127.0.0.1:{v.submissions_port}", "-servername", name])
        assert subject_cn(out) == want, f"SNI {name} (implicit TLS): {subject_cn(out)}"
    rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-noservername"])
    assert subject_cn(out) == HOSTNAME, f"no SNI: {subject_cn(out)}"
    # the same with Python: the certificate the server presents
    with v.smtp() as c:
        c.ehlo()
        c.starttls(server_name="other.test")
        der = c.sock.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der)
        p = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem,
                           capture_output=True, text=True, timeout=30)
        assert "other.test" in p.stdout, p.stdout
        c.ehlo()
        expect(c.cmd("NOOP"), 250)


def presented_cn(v, port=None, implicit=False):
    """The CN of the certificate a new session is given."""
    if implicit:
        rc, out = s_client(["-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME])
    else:
        rc, out = s_client(["-connect", f"127.0.0.1:{port or v.port}", "-starttls", "smtp",
                            "-servername", HOSTNAME])
    return subject_cn(out)


def test_reload_picks_up_new_certificate():
    """A certificate renewed on disk is used after SIGHUP (as `postfix
    reload`), by new sessions; a broken one is refused and the old stays."""
    d = tmpdir()
    cert, key = make_cert(d, "first.test", name="live")
    v = Vsmtpd(settings={"vsmtpd": {"tls_cert": cert, "tls_key": key}}, dir=d).start()
    try:
        assert presented_cn(v) == "first.test"
        make_cert(d, "second.test", name="live")  # renewed in place
        os.kill(v.pid, 1)
        v.wait_log(r"reloaded config=", count=1)
        assert presented_cn(v) == "second.test"
        with open(key, "w") as f:
            f.write("not a key\n")
        os.kill(v.pid, 1)
        v.wait_log(r"reloaded config=", count=2)
        assert presented_cn(v) == "second.test", "a broken key must not replace a good setup"
        v.wait_log(r"keeping the previous TLS/AUTH setup")
    finally:
        v.stop()


def test_per_listener_certificates():
    """submission_tls_cert / submissions_tls_cert override tls_cert for
    their listeners."""
    d = tmpdir()
    cert, key = make_cert(d, "mx.test")
    scert, skey = make_cert(d, "submit.test")
    icert, ikey = make_cert(d, "implicit.test")
    v = Vsmtpd(settings={"vsmtpd": {
        "tls_cert": cert, "tls_key": key,
        "listen_submission": "127.0.0.1:{submission_port}",
        "submission_tls_cert": scert, "submission_tls_key": skey,
        "listen_submissions": "127.0.0.1:{submissions_port}",
        "submissions_tls_cert": icert, "submissions_tls_key": ikey}}, dir=d).start()
    try:
        assert presented_cn(v) == "mx.test"
        assert presented_cn(v, v.submission_port) == "submit.test"
        assert presented_cn(v, v.submissions_port, implicit=True) == "implicit.test"
    finally:
        v.stop()


def test_tls_min_version():
    v = tls_server("tls13")
    rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-tls1_2"])
    # s_client prints "New, TLSv1.x, Cipher is ..." only for a session it got
    assert not re.search(r"^New, TLSv", out, re.M), out[-3000:]
    assert re.search(r"alert|handshake failure|no protocols|wrong version|unsupported", out, re.I), \
        out[-3000:]
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("STARTTLS"), 220)
        try:
            c.wrap_tls(context=tls_context(maximum_version=ssl.TLSVersion.TLSv1_2))
            raise AssertionError(f"TLS 1.2 handshake succeeded: {c.sock.version()}")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
    with v.smtp() as c:
        c.ehlo()
        c.starttls()
        assert c.sock.version() == "TLSv1.3", c.sock.version()
        c.ehlo()
        expect(c.cmd("NOOP"), 250)
    # the default server speaks TLS 1.2 when asked to
    with tls_server().smtp() as c:
        c.ehlo()
        c.starttls(context=tls_context(maximum_version=ssl.TLSVersion.TLSv1_2))
        assert c.sock.version() == "TLSv1.2", c.sock.version()


def test_plaintext_after_starttls_discarded():
    """CVE-2011-0411: "STARTTLS\\r\\nRSET\\r\\n" in one write: the RSET is
    never answered, neither in plaintext nor inside TLS."""
    v = tls_server()
    with v.smtp() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        expect(c.reply(), 220, "2.0.0 Ready to start TLS")
        time.sleep(0.3)  # a plaintext answer to RSET would be here by now
        c.wrap_tls()      # fails if plaintext bytes came after the 220
        c.send(b"HELP\r\n")
        r = c.reply()
        assert r.code == 214, f"first reply inside TLS is not HELP's (RSET answered?): {r}"
        extra = c.read_available(0.5)
        assert not extra, f"more replies inside TLS: {extra!r}"
        # also a command that would change state: MAIL injected behind STARTTLS
    with v.smtp() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
        expect(c.reply(), 220)
        c.wrap_tls()
        c.ehlo()
        # no transaction was started by the injected MAIL
        expect(c.cmd("RCPT TO:<b@example.org>"), 503, "5.5.1 Error: need MAIL command")


def test_state_reset_after_starttls():
    v = tls_server()
    with v.smtp() as c:
        c.ehlo()
        c.starttls()
        expect(c.cmd("MAIL FROM:<a@example.net>"), 503, "5.5.1 Error: send HELO/EHLO first")
        kw = c.ehlo().keywords()
        assert "STARTTLS" not in kw, kw
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
    # a transaction begun before STARTTLS is gone too
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<before@example.net>"), 250)
        r = c.cmd("STARTTLS")
        if r.code == 220:
            c.wrap_tls()
            c.ehlo()
            expect(c.cmd("RCPT TO:<b@example.org>"), 503, "5.5.1 Error: need MAIL command")
        else:
            # refusing STARTTLS inside a transaction is also safe
            assert 500 <= r.code < 600 or r.code == 503, r


def test_second_starttls_refused():
    v = tls_server()
    with v.smtp() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        expect(c.cmd("STARTTLS"), 554, "5.5.1 Error: TLS already active")
        expect(c.cmd("NOOP"), 250)


def full_tls_transaction(v, rcpt):
    with v.smtp() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r, qid = v.send_mail("a@example.net", rcpt, "Subject: after\n\nok\n", client=c)
        assert qid, r
    v.wait_maildir(rcpt)


def test_garbage_instead_of_client_hello():
    v = tls_server()
    for garbage in [b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x01\x00\x05hello",
                    b"\x16\x03\x03\xff\xff" + b"A" * 300, os.urandom(2048)]:
        with v.smtp() as c:
            c.ehlo()
            expect(c.cmd("STARTTLS"), 220)
            c.send(garbage)
            assert c.closed(5), f"still open after {garbage[:20]!r}"
        with v.smtp(port=v.submissions_port, greeting=False) as c:
            c.send(garbage)
            assert c.closed(5), f"implicit TLS still open after {garbage[:20]!r}"
    full_tls_transaction(v, "after-garbage@example.org")


def test_handshake_timeout():
    v = tls_server("short")
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("STARTTLS"), 220)
        t0 = time.monotonic()
        assert c.closed(8), "silent client after STARTTLS not closed"
        took = time.monotonic() - t0
        assert 1.5 <= took <= 4.5, f"closed after {took:.1f}s (tls_handshake_timeout = 2s)"
    with v.smtp(port=v.submissions_port, greeting=False) as c:
        t0 = time.monotonic()
        assert c.closed(8), "silent client on the implicit TLS port not closed"
        took = time.monotonic() - t0
        assert 1.5 <= took <= 4.5, f"closed after {took:.1f}s (implicit TLS)"
    full_tls_transaction(v, "after-timeout@example.org")


def test_no_client_certificate_required():
    v = tls_server()
    rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-servername",
                        HOSTNAME], ["EHLO client.test\n", "NOOP\n", "QUIT\n"])
    assert "Acceptable client certificate CA names" not in out, out[:3000]
    assert re.search(r"^250 2\.0\.0 Ok", out, re.M), out[-2000:]
    # a client that offers a certificate anyway is fine too
    d = tmpdir()
    ccert, ckey = make_cert(d, "client.test")
    rc, out = s_client(["-connect", f"127.0.0.1:{v.port}", "-starttls", "smtp", "-cert", ccert,
                        "-key", ckey], ["EHLO client.test\n", "NOOP\n", "QUIT\n"])
    assert re.search(r"^221 2\.0\.0 Bye", out, re.M), out[-2000:]


run([test_starttls_s_client, test_starttls_swaks, test_implicit_tls, test_sni_picks_certificate,
     test_tls_min_version, test_plaintext_after_starttls_discarded, test_state_reset_after_starttls,
     test_second_starttls_refused, test_garbage_instead_of_client_hello, test_handshake_timeout,
     test_no_client_certificate_required, test_reload_picks_up_new_certificate,
     test_per_listener_certificates])
