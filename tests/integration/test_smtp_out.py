#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's outbound SMTP client (mta/smtp-out.h) against real peers, through
tests/mta/smtp-out-probe ($SMTP_OUT_PROBE), which sends one message and
prints the per-recipient results as JSON.

smtp-sink (Postfix's test server): delivery with DSN parameters and
dot-stuffing as the sink records them, PIPELINING on and off, every RCPT
answered 4xx or 5xx (-r/-f), a disconnect after DATA and after the end of
data (-q), a 421 (-Q), a server that never answers (greeting timeout) and
one slow to answer DATA (-w), a refused connection, HELO fallback (-e),
connection reuse counted by the sink (-c), a cached connection the server
drops at RSET (-q RSET: the message goes over a fresh one), 8BITMIME and
SMTPUTF8 not offered (local 5.6.3 / 5.6.7), TLS required but not offered,
AUTH refused without TLS.

A sandboxed Postfix: per-recipient 250/450/550 from an access map in one
pipelined transaction (the accepted one relayed on to smtp-sink), STARTTLS
with a test CA (encrypt; verify with the right name, a wrong name, an
untrusted CA; may, and may falling back to plaintext when the handshake
fails), SMTPUTF8 with smtputf8_enable = yes.  vsmtpd: AUTH PLAIN over
STARTTLS (right and wrong password)."""
import json, os, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
import postfixlib as P
from taplib import run, tmpdir
import vsmtpdlib as V

PROBE = os.environ.get("SMTP_OUT_PROBE", "")
MESSAGE = "From: a@src.test\\nTo: x@dst.test\\nSubject: out\\n\\nline one\\n.leading dot\\n..two dots\\nend\\n"


def probe(port, *args, rcpts=("x@dst.test",), sender="a@src.test", message=MESSAGE,
          timeout=60, expect_rc=0):
    """Run the probe; returns (list of result dicts, the final {"idle": n})."""
    if not PROBE:
        raise AssertionError("SMTP_OUT_PROBE is not set (tests/meson.build integration_env)")
    cmd = [PROBE, "--address", "127.0.0.1", "--port", str(port), "--from", sender,
           "--helo", "client.test"]
    for r in rcpts:
        cmd += ["--rcpt", r]
    if message is not None:
        cmd += ["--message", message]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == expect_rc, f"probe exited {p.returncode}: {p.stdout}\n{p.stderr}"
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert lines and "idle" in lines[-1], f"no final line: {p.stdout}\n{p.stderr}"
    return lines[:-1], lines[-1], p.stderr


def one(port, *args, **kw):
    results, _, _ = probe(port, *args, **kw)
    assert len(results) == 1, results
    return results[0]


def verdicts(result):
    return [(r["verdict"], r["code"], r["enhanced"]) for r in result["rcpts"]]


def sink(**kw):
    return P.SmtpSink(tmpdir(), **kw).start()


def sink_counters(s, timeout=5):
    """(sessions, messages) from smtp-sink -c, once the counters settle."""
    import re
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        m = re.findall(r"sess=(\d+) quit=\d+ mesg=(\d+)", s.output())
        if m and m[-1] == last:
            break
        last = m[-1] if m else None
        time.sleep(0.3)
    assert last, f"no counters: {s.output()!r}"
    return int(last[0]), int(last[1])


# ------------------------------------------------------------------ smtp-sink

def test_deliver_pipelined_with_dsn():
    s = sink()
    try:
        r = one(s.port, "--notify", "success,failure", "--orcpt", "--envid", "q1 x+y",
                "--ret", "HDRS", "--body", "8BITMIME", rcpts=("x@dst.test", "y@dst.test"))
        assert r["transport"] == "ok" and r["pipelined"] and r["esmtp"] and r["dsn"], r
        assert verdicts(r) == [("delivered", 250, "2.0.0")] * 2, r
        assert all(x["phase"] == "end of data" for x in r["rcpts"]), r
        (m,) = s.wait_messages(1)
        assert m.mail_args == "<a@src.test> BODY=8BITMIME RET=HDRS ENVID=q1+20x+2By", m.mail_args
        assert m.rcpt_args == ["<x@dst.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@dst.test",
                               "<y@dst.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;y@dst.test"], \
            m.rcpt_args
        assert m.helo == "client.test", m.helo
        # dot-stuffed on the wire, unstuffed by the sink: the lines as given
        assert m.body == "line one\n.leading dot\n..two dots\nend\n", repr(m.body)
        assert m.header("Subject") == "out"
    finally:
        s.stop()


def test_no_pipelining():
    s = sink(extra_args=["-p"])
    try:
        r = one(s.port, rcpts=("x@dst.test", "y@dst.test"))
        assert not r["pipelined"], r
        assert verdicts(r) == [("delivered", 250, "2.0.0")] * 2, r
        (m,) = s.wait_messages(1)
        assert m.rcpts == ["x@dst.test", "y@dst.test"], m.rcpts
    finally:
        s.stop()


def test_rcpt_soft_and_hard_reject():
    s = sink(soft_reject=["RCPT"])
    try:
        r = one(s.port, rcpts=("x@dst.test", "y@dst.test"))
        assert verdicts(r) == [("defer", 450, "4.3.0")] * 2, r
        assert all(x["phase"] == "RCPT" and not x["local"] for x in r["rcpts"]), r
        assert r["transport"] == "ok" and not r["try_next"], r
        assert s.messages() == []
    finally:
        s.stop()
    s = sink(hard_reject=["RCPT"], hard_reply="550 5.1.1 no such user")
    try:
        r = one(s.port, rcpts=("x@dst.test",))
        assert verdicts(r) == [("bounce", 550, "5.1.1")], r
        assert r["rcpts"][0]["text"] == "no such user", r
    finally:
        s.stop()


def test_mail_rejected():
    s = sink(hard_reject=["MAIL"])
    try:
        r = one(s.port, rcpts=("x@dst.test", "y@dst.test"))
        assert verdicts(r) == [("bounce", 500, "5.3.0")] * 2, r
        assert all(x["phase"] == "MAIL" for x in r["rcpts"]), r
    finally:
        s.stop()


def test_disconnect_mid_session():
    s = sink(disconnect=["DATA"])
    try:
        r = one(s.port, rcpts=("x@dst.test", "y@dst.test"))
        assert r["transport"] == "closed", r
        assert verdicts(r) == [("defer", 0, "4.4.2")] * 2, r
        assert r["rcpts"][0]["phase"] == "DATA" and r["rcpts"][0]["local"], r
        assert "lost connection" in r["error"], r
    finally:
        s.stop()
    # after the whole message: deferred (a duplicate is possible, a loss is not)
    s = sink(disconnect=["."])
    try:
        r = one(s.port)
        assert r["transport"] == "closed" and verdicts(r) == [("defer", 0, "4.4.2")], r
        assert r["rcpts"][0]["phase"] == "end of data", r
        assert "more than once" in r["rcpts"][0]["text"], r
        assert not r["try_next"], r
    finally:
        s.stop()


def test_421_closing():
    s = sink(extra_args=["-Q", "MAIL"])
    try:
        r = one(s.port)
        assert verdicts(r) == [("defer", 421, "4.0.0")], r
        assert r["try_next"], r
    finally:
        s.stop()


def test_abort_after_data():
    # -A 0: 550 right after the 354 and no further reading
    s = sink(extra_args=["-A", "0"])
    try:
        r = one(s.port, "--timeout-ms", "5000")
        assert r["rcpts"][0]["verdict"] == "bounce" and r["rcpts"][0]["code"] == 550, r
    finally:
        s.stop()


def test_greeting_timeout():
    """A server that accepts and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                held.append(c)
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        start = time.time()
        r = one(port, "--timeout-ms", "1500")
        took = time.time() - start
        assert r["transport"] == "timeout" and r["try_next"], r
        assert verdicts(r) == [("defer", 0, "4.4.2")], r
        assert r["rcpts"][0]["phase"] == "greeting", r
        assert "timed out while receiving the initial server greeting" in r["error"], r
        assert 1.4 < took < 10, took
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def test_cancel():
    """A server that never answers; the caller cancels: the callback comes at
    once with G_IO_ERROR_CANCELLED, not after the greeting timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    try:
        start = time.time()
        results, idle, _ = probe(srv.getsockname()[1], "--timeout-ms", "20000", "--cancel-ms",
                                 "500", "--linger-ms", "200")
        assert results == [{"cancelled": True}], results
        assert time.time() - start < 10
        assert idle["idle"] == 0, idle
    finally:
        srv.close()


def test_data_timeout():
    # without PIPELINING (smtp-sink holds back every pipelined reply while it
    # delays one)
    s = sink(extra_args=["-w", "10", "-p"])
    try:
        r = one(s.port, "--timeout-ms", "1500")
        assert r["transport"] == "timeout", r
        assert r["rcpts"][0]["phase"] == "DATA" and r["rcpts"][0]["verdict"] == "defer", r
        assert not r["try_next"], r
    finally:
        s.stop()


def test_connect_refused():
    port = P.free_port()
    r = one(port)
    assert r["transport"] == "connect-failed" and r["try_next"], r
    assert verdicts(r) == [("defer", 0, "4.4.1")], r
    assert r["rcpts"][0]["phase"] == "connect", r
    assert "refused" in r["error"].lower(), r


def test_helo_fallback():
    # -e: no ESMTP; EHLO is refused, HELO works, no ESMTP parameters go out
    s = sink(extra_args=["-e"])
    try:
        r = one(s.port, "--notify", "success", "--envid", "E1", "--ret", "FULL")
        assert not r["esmtp"] and not r["pipelined"] and not r["dsn"], r
        assert verdicts(r) == [("delivered", 250, None)] or \
            verdicts(r) == [("delivered", 250, "2.0.0")], r
        (m,) = s.wait_messages(1)
        assert m.mail_args == "<a@src.test>", m.mail_args
        assert m.rcpt_args == ["<x@dst.test>"], m.rcpt_args
    finally:
        s.stop()


def test_connection_reuse():
    s = sink(counters=True, dump=False)
    try:
        results, idle, _ = probe(s.port, "--repeat", "3", "--linger-ms", "500")
        assert [r["reused"] for r in results] == [False, True, True], results
        assert all(verdicts(r) == [("delivered", 250, "2.0.0")] for r in results), results
        assert idle["idle"] == 1, idle
        # the probe's exit said QUIT: one session carried all three
        assert sink_counters(s) == (1, 3)
    finally:
        s.stop()
    s = sink(counters=True, dump=False)
    try:
        results, idle, _ = probe(s.port, "--repeat", "3", "--no-reuse", "--linger-ms", "300")
        assert [r["reused"] for r in results] == [False] * 3, results
        assert idle["idle"] == 0, idle
        assert sink_counters(s) == (3, 3)
    finally:
        s.stop()
    # max_messages per connection, idle timeout
    s = sink(counters=True, dump=False)
    try:
        results, _, _ = probe(s.port, "--repeat", "3", "--max-messages", "2")
        assert [r["reused"] for r in results] == [False, True, False], results
        results, idle, _ = probe(s.port, "--repeat", "2", "--delay-ms", "1500",
                                 "--idle-ms", "500")
        assert [r["reused"] for r in results] == [False, False], results
    finally:
        s.stop()


def test_dead_cached_connection_replaced():
    # the sink drops the connection at every RSET: each next message finds
    # its cached connection dead and goes over a new one, unnoticed
    s = sink(disconnect=["RSET"], counters=True, dump=False)
    try:
        results, _, _ = probe(s.port, "--repeat", "3")
        assert all(verdicts(r) == [("delivered", 250, "2.0.0")] for r in results), results
        assert all(r["transport"] == "ok" for r in results), results
        assert sink_counters(s)[1] == 3
    finally:
        s.stop()


def test_8bitmime_not_offered():
    s = sink(extra_args=["-8"])
    try:
        r = one(s.port, "--body", "8BITMIME",
                message="Subject: x\\n\\ncaf\u00e9\\n")
        assert verdicts(r) == [("bounce", 0, "5.6.3")] and r["rcpts"][0]["local"], r
        # declared 8-bit, but all 7-bit: sent without BODY=
        r = one(s.port, "--body", "8BITMIME")
        assert verdicts(r) == [("delivered", 250, "2.0.0")], r
        (m,) = s.wait_messages(1)
        assert m.mail_args == "<a@src.test>", m.mail_args
    finally:
        s.stop()


def test_smtputf8_not_offered():
    # smtp-sink offers no SMTPUTF8 (RFC 6531 §3.2)
    s = sink()
    try:
        r = one(s.port, "--smtputf8", rcpts=("j\u00f6rg@dst.test", "x@dst.test"))
        assert verdicts(r) == [("bounce", 0, "5.6.7"), ("delivered", 250, "2.0.0")], r
        (m,) = s.wait_messages(1)
        assert m.rcpts == ["x@dst.test"] and "SMTPUTF8" not in m.mail_args, m.mail_args
        # UTF-8 in the header section: nobody gets it
        r = one(s.port, "--smtputf8", rcpts=("x@dst.test",),
                message="Subject: gr\u00fc\u00dfe\\n\\nbody\\n")
        assert verdicts(r) == [("bounce", 0, "5.6.7")], r
        # a UTF-8 sender: nobody either
        r = one(s.port, "--smtputf8", sender="j\u00f6rg@src.test")
        assert verdicts(r) == [("bounce", 0, "5.6.7")], r
    finally:
        s.stop()


def test_tls_required_not_offered():
    s = sink()
    try:
        for policy in ("encrypt", "verify"):
            r = one(s.port, "--tls", policy)
            assert r["transport"] == "tls-failed" and r["try_next"], r
            assert verdicts(r) == [("defer", 0, "4.7.4")], r
            assert "not offered" in r["rcpts"][0]["text"], r
        # may: plaintext is fine
        r = one(s.port, "--tls", "may")
        assert verdicts(r) == [("delivered", 250, "2.0.0")] and not r["tls"], r
        assert len(s.wait_messages(1)) == 1
    finally:
        s.stop()


def test_auth_needs_tls():
    s = sink()  # offers AUTH PLAIN LOGIN, no STARTTLS
    try:
        r = one(s.port, "--auth-user", "u", "--auth-password", "p")
        assert verdicts(r) == [("defer", 0, "4.7.0")], r
        assert "without TLS" in r["rcpts"][0]["text"], r
        assert s.messages() == []
    finally:
        s.stop()


def test_bdat_binarymime():
    """No installed server offers BINARYMIME: a scripted one checks the BDAT
    framing (RFC 3030) byte for byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    seen = {"cmds": [], "chunk": None}

    def serve():
        c, _ = srv.accept()
        c.settimeout(10)
        f = c.makefile("rb")
        c.sendall(b"220 fake ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.rstrip(b"\r\n").decode()
            seen["cmds"].append(cmd)
            if cmd.startswith("EHLO"):
                c.sendall(b"250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-BINARYMIME\r\n"
                          b"250 8BITMIME\r\n")
            elif cmd.startswith("BDAT"):
                n = int(cmd.split()[1])
                seen["chunk"] = f.read(n)
                c.sendall(b"250 2.0.0 chunk ok\r\n")
            elif cmd == "QUIT":
                c.sendall(b"221 bye\r\n")
                break
            else:
                c.sendall(b"250 2.0.0 ok\r\n")
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        d = tmpdir()
        path = os.path.join(d, "binary.eml")
        body = b"Subject: bin\r\n\r\n\x00\xff\n.\n\r.\r\nend"
        with open(path, "wb") as f:
            f.write(body)
        r = one(port, "--body", "BINARYMIME", "--message-file", path, message=None)
        assert verdicts(r) == [("delivered", 250, "2.0.0")], r
        t.join(10)
        assert seen["chunk"] == body, seen
        assert seen["cmds"][1:4] == ["MAIL FROM:<a@src.test> BODY=BINARYMIME",
                                     "RCPT TO:<x@dst.test>", f"BDAT {len(body)} LAST"], seen
    finally:
        srv.close()


def test_bad_tls_config():
    p = subprocess.run([PROBE, "--address", "127.0.0.1", "--from", "a@b", "--rcpt", "c@d",
                        "--message", "x", "--ca", "/nonexistent/ca.pem"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "CA file /nonexistent/ca.pem" in p.stderr, p.stderr


# -------------------------------------------------------------------- Postfix

_certs = None


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certs():
    """A test CA, mx.test's certificate signed by it, and a stranger CA."""
    global _certs
    if _certs is None:
        d = tmpdir()
        for ca in ("ca", "stranger"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                    "-subj", f"/CN=vps smtp-out test {ca}", cwd=d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "mx.key", "-out", "mx.csr", "-subj", "/CN=mx.test", cwd=d)
        with open(os.path.join(d, "mx.ext"), "w") as f:
            f.write("subjectAltName=DNS:mx.test\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", "mx.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "mx.pem", "-days", "2", "-extfile", "mx.ext", cwd=d)
        os.chmod(d, 0o755)
        _certs = d
    return _certs


def postfix(extra=None, relay=None):
    d = tmpdir()
    c = certs()
    main = {"smtpd_tls_cert_file": os.path.join(c, "mx.pem"),
            "smtpd_tls_key_file": os.path.join(c, "mx.key"),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
            "myhostname": "mx.test"}
    main.update(extra or {})
    return P.Postfix(d, relay_port=relay.port if relay else None, main_cf_extra=main).start()


def test_postfix_per_recipient_replies():
    s = sink()
    d = tmpdir()
    access = os.path.join(d, "access")
    with open(access, "w") as f:
        f.write("later@dst.test 450 4.2.0 try later\nno@dst.test 550 5.1.1 no such user\n")
    os.chmod(d, 0o755)
    pf = postfix({"smtpd_recipient_restrictions":
                  f"check_recipient_access texthash:{access}, permit_mynetworks, "
                  "reject_unauth_destination"}, relay=s)
    try:
        r = one(pf.port, rcpts=("ok@dst.test", "later@dst.test", "no@dst.test"))
        assert r["pipelined"] and r["esmtp"] and r["dsn"], r
        v = verdicts(r)
        assert v[0][0] == "delivered" and v[0][1] == 250, r
        assert v[1] == ("defer", 450, "4.2.0"), r
        assert v[2] == ("bounce", 550, "5.1.1"), r
        assert "try later" in r["rcpts"][1]["text"] and "no such user" in r["rcpts"][2]["text"]
        (m,) = s.wait_messages(1, timeout=30)
        assert m.rcpts == ["ok@dst.test"], m.rcpts
        assert "improper command pipelining" not in pf.log(), pf.log()[-2000:]
    finally:
        pf.stop()
        s.stop()


def test_postfix_starttls():
    c = certs()
    s = sink()
    pf = postfix(relay=s)
    ca = os.path.join(c, "ca.pem")
    stranger = os.path.join(c, "stranger.pem")
    try:
        # encrypt: any certificate; here it would verify too (mx.test, our CA)
        r = one(pf.port, "--tls", "encrypt", "--mx-name", "mx.test", "--ca", ca)
        assert r["tls"] and r["tls_version"] in ("TLSv1.2", "TLSv1.3"), r
        assert verdicts(r)[0][0] == "delivered", r
        # encrypt does not care about the name or the CA
        r = one(pf.port, "--tls", "encrypt", "--mx-name", "other.test", "--ca", stranger)
        assert r["tls"] and not r["tls_verified"] and verdicts(r)[0][0] == "delivered", r
        # verify, right name and CA
        r = one(pf.port, "--tls", "verify", "--mx-name", "mx.test", "--ca", ca)
        assert r["tls"] and r["tls_verified"] and verdicts(r)[0][0] == "delivered", r
        # verify, wrong name
        r = one(pf.port, "--tls", "verify", "--mx-name", "other.test", "--ca", ca)
        assert r["transport"] == "tls-failed" and r["try_next"], r
        assert verdicts(r) == [("defer", 0, "4.7.5")], r
        assert "hostname mismatch" in r["error"], r
        # verify, untrusted CA
        r = one(pf.port, "--tls", "verify", "--mx-name", "mx.test", "--ca", stranger)
        assert r["transport"] == "tls-failed", r
        assert "unable to get local issuer certificate" in r["error"], r
        # may: TLS when offered
        r = one(pf.port, "--tls", "may", "--mx-name", "mx.test")
        assert r["tls"] and not r["tls_fallback"] and verdicts(r)[0][0] == "delivered", r
        assert len(s.wait_messages(4, timeout=30)) == 4
        pf.wait_log(r"Anonymous TLS connection established from", count=4, timeout=10)
    finally:
        pf.stop()
        s.stop()


def test_postfix_may_falls_back_to_plaintext():
    # the server stops at TLSv1.2, the client starts at TLSv1.3: no handshake
    s = sink()
    pf = postfix({"smtpd_tls_protocols": "!SSLv2, !SSLv3, !TLSv1.3"}, relay=s)
    try:
        r = one(pf.port, "--tls", "may", "--tls-min-version", "TLSv1.3")
        assert not r["tls"] and r["tls_fallback"], r
        assert verdicts(r)[0][0] == "delivered", r
        # encrypt does not fall back
        r = one(pf.port, "--tls", "encrypt", "--tls-min-version", "TLSv1.3")
        assert r["transport"] == "tls-failed" and verdicts(r) == [("defer", 0, "4.7.5")], r
        assert len(s.wait_messages(1, timeout=30)) == 1
    finally:
        pf.stop()
        s.stop()


def test_postfix_smtputf8():
    pf = postfix({"smtputf8_enable": "yes", "default_transport": "discard",
                  "relay_transport": "discard"})
    try:
        rcpt = "j\u00f6rg@d\u00f6main.test"
        r = one(pf.port, "--smtputf8", sender="s\u00e9nder@src.test",
                rcpts=(rcpt, "x@dst.test"), message="Subject: gr\u00fc\u00dfe\\n\\nhi\\n")
        assert [v[0] for v in verdicts(r)] == ["delivered", "delivered"], r
        pf.wait_log(r"to=<j\u00f6rg@d\u00f6main\.test>.*status=sent", timeout=20)
        pf.wait_log(r"from=<s\u00e9nder@src\.test>", timeout=20)
    finally:
        pf.stop()
    # the same server without SMTPUTF8: our client refuses before MAIL
    pf = postfix({"smtputf8_enable": "no", "default_transport": "discard",
                  "relay_transport": "discard"})
    try:
        r = one(pf.port, "--smtputf8", rcpts=("j\u00f6rg@dst.test",))
        assert verdicts(r) == [("bounce", 0, "5.6.7")], r
    finally:
        pf.stop()


# --------------------------------------------------------------------- vsmtpd

def test_auth_plain_over_starttls():
    d = tmpdir()
    cert, key = V.make_cert(d, V.HOSTNAME)
    V.make_passwd(os.path.join(d, "passwd"), {"alice": "s3cret pw"})
    v = V.Vsmtpd(settings={"vsmtpd": {"tls_cert": cert, "tls_key": key,
                                      "passwd_file": "passwd",
                                      "auth_failure_delay": "0s"}}, dir=d).start()
    try:
        r = one(v.port, "--tls", "encrypt", "--auth-user", "alice", "--auth-password",
                "s3cret pw", rcpts=("bob@dst.test",))
        assert r["tls"] and verdicts(r)[0][0] == "delivered", r
        v.wait_log(r"auth.*alice|alice.*auth", timeout=10)
        r = one(v.port, "--tls", "encrypt", "--auth-user", "alice", "--auth-password", "wrong",
                rcpts=("bob@dst.test",))
        assert r["rcpts"][0]["verdict"] == "defer" and r["rcpts"][0]["code"] == 535, r
        assert r["rcpts"][0]["phase"] == "AUTH" and r["try_next"], r
    finally:
        v.stop()


if __name__ == "__main__":
    run([test_deliver_pipelined_with_dsn, test_no_pipelining, test_rcpt_soft_and_hard_reject,
         test_mail_rejected, test_disconnect_mid_session, test_421_closing, test_abort_after_data,
         test_greeting_timeout, test_cancel, test_data_timeout, test_connect_refused,
         test_helo_fallback, test_connection_reuse, test_dead_cached_connection_replaced,
         test_8bitmime_not_offered, test_smtputf8_not_offered, test_tls_required_not_offered,
         test_auth_needs_tls, test_bdat_binarymime, test_bad_tls_config,
         test_postfix_per_recipient_replies, test_postfix_starttls,
         test_postfix_may_falls_back_to_plaintext, test_postfix_smtputf8,
         test_auth_plain_over_starttls])
