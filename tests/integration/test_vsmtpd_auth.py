#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's AUTH (RFC 4954) against a passwd_file of crypt hashes: PLAIN
with an initial response and after a 334, LOGIN, failures delayed by
auth_failure_delay, unknown users, cancel, AUTH only over TLS (538)
unless auth_over_plaintext, the submission listeners requiring AUTH
before MAIL (530), swaks --auth PLAIN/LOGIN over STARTTLS, and the rules'
auth stage seeing the user (auth.user)."""
import base64, os, re, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir
from vsmtpdlib import expect, HOSTNAME, Vsmtpd, make_cert, make_passwd

USERS = {"alice": "s3cret pass", "bob": "bobpw", "carol": "pässwörd"}
RULES = """\
auth {
  rule "who" when auth.user == "bob" => reject 535 5.7.8 "bob is banned"
}
"""
_servers = {}


def auth_server(kind="default"):
    """mx + submission (STARTTLS) + submissions (implicit TLS) listeners,
    passwd_file, auth_failure_delay = 1s; "plaintext": auth_over_plaintext."""
    if kind not in _servers:
        d = tmpdir()
        cert, key = make_cert(d, HOSTNAME)
        make_passwd(os.path.join(d, "passwd"), USERS)
        vs = {"tls_cert": cert, "tls_key": key, "passwd_file": "passwd",
              "auth_failure_delay": "1s",
              "listen_submission": "127.0.0.1:{submission_port}",
              "listen_submissions": "127.0.0.1:{submissions_port}"}
        if kind == "plaintext":
            vs["auth_over_plaintext"] = "true"
        _servers[kind] = Vsmtpd(rules=RULES, settings={"vsmtpd": vs}, dir=d).start()
    return _servers[kind]


def b64(s):
    return base64.b64encode(s.encode("utf-8")).decode()


def plain(user, password, authzid=""):
    return b64(f"{authzid}\0{user}\0{password}")


def tls_session(v, port=None):
    """A session after STARTTLS and a new EHLO; returns (client, keywords)."""
    c = v.smtp(port=port)
    c.ehlo()
    c.starttls()
    return c, c.ehlo().keywords()


OK = "2.7.0 Authentication successful"
FAILED = "5.7.8 Error: authentication failed"


def test_no_auth_before_tls():
    v = auth_server()
    for port in (v.port, v.submission_port):
        with v.smtp(port=port) as c:
            kw = c.ehlo().keywords()
            assert "AUTH" not in kw, f"AUTH offered without TLS: {kw}"
            assert "STARTTLS" in kw, kw
            expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 538,
                   "5.7.11 Encryption required for requested authentication mechanism")
            expect(c.cmd("AUTH LOGIN"), 538, enhanced="5.7.11")
            expect(c.cmd("NOOP"), 250)


def test_auth_plain_initial_response():
    v = auth_server()
    c, kw = tls_session(v)
    with c:
        mechs = kw.get("AUTH", "").upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, f"AUTH keyword: {kw}"
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 503, enhanced="5.5.1")
        rcpt = "auth-plain@example.org"
        r, qid = v.send_mail("alice@example.net", rcpt, "Subject: authed\n\nhi\n", client=c)
        assert qid, r
    got = v.wait_maildir(rcpt)[0]
    head = re.sub(rb"\n[ \t]+", b" ", got.split(b"\n\n", 1)[0])
    assert re.search(rb"with ESMTPSA id " + qid.encode(), head), head
    v.wait_log(r"stage=auth")


def test_auth_plain_after_challenge():
    v = auth_server()
    c, _ = tls_session(v)
    with c:
        r = c.cmd("AUTH PLAIN")
        assert r.code == 334 and r.text.strip() == "", f"want an empty 334 challenge: {r}"
        expect(c.cmd(plain("carol", USERS["carol"])), 235, OK)


def test_auth_login():
    v = auth_server()
    c, _ = tls_session(v)
    with c:
        expect(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
        expect(c.cmd(b64("alice")), 334, "UGFzc3dvcmQ6")
        expect(c.cmd(b64(USERS["alice"])), 235, OK)
    c, _ = tls_session(v)
    with c:
        # the user name as initial response
        expect(c.cmd("AUTH LOGIN " + b64("carol")), 334, "UGFzc3dvcmQ6")
        expect(c.cmd(b64(USERS["carol"])), 235, OK)


def timed(c, line):
    t0 = time.monotonic()
    r = c.cmd(line)
    return r, time.monotonic() - t0


def test_failures_are_delayed():
    v = auth_server()
    c, _ = tls_session(v)
    with c:
        r, took = timed(c, "AUTH PLAIN " + plain("alice", "wrong"))
        expect(r, 535, FAILED)
        assert took >= 0.9, f"wrong password answered after {took:.2f}s (auth_failure_delay = 1s)"
        r, took = timed(c, "AUTH PLAIN " + plain("nosuchuser", "whatever"))
        expect(r, 535, FAILED)
        assert took >= 0.9, f"unknown user answered after {took:.2f}s"
        expect(c.cmd("AUTH LOGIN"), 334)
        expect(c.cmd(b64("alice")), 334)
        r, took = timed(c, b64("wrong"))
        expect(r, 535, FAILED)
        assert took >= 0.9, f"LOGIN failure after {took:.2f}s"
        # not authenticated: a later good AUTH still works
        t0 = time.monotonic()
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)
        assert time.monotonic() - t0 < 0.9, "a good AUTH was delayed"


def test_cancel_and_bad_base64():
    v = auth_server()
    c, _ = tls_session(v)
    with c:
        expect(c.cmd("AUTH LOGIN"), 334)
        expect(c.cmd("*"), 501, enhanced="5.7.0")
        expect(c.cmd("AUTH PLAIN"), 334)
        expect(c.cmd("*"), 501, enhanced="5.7.0")
        r = c.cmd("AUTH PLAIN !!!not-base64!!!")
        assert r.code == 501, f"bad base64: {r}"
        r = c.cmd("AUTH CRAM-MD5")
        assert 500 <= r.code < 600, f"unknown mechanism: {r}"
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)


def test_submission_requires_auth():
    v = auth_server()
    rcpt = "sub@example.org"
    c, kw = tls_session(v, v.submission_port)
    with c:
        assert "AUTH" in kw, kw
        expect(c.cmd("MAIL FROM:<alice@example.net>"), 530, "5.7.0 Authentication required")
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)
        r, qid = v.send_mail("alice@example.net", rcpt, "Subject: sub\n\nx\n", client=c)
        assert qid, r
    v.wait_maildir(rcpt)
    # without TLS the submission listener refuses MAIL as well
    with v.smtp(port=v.submission_port) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.net>"), 530, enhanced="5.7.0")
    # the mx listener does not require AUTH
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<anyone@example.net>"), 250)


def test_submissions_implicit_tls_auth():
    v = auth_server()
    rcpt = "subs@example.org"
    with v.smtp(port=v.submissions_port, tls=True) as c:
        expect(c.greeting, 220)
        kw = c.ehlo().keywords()
        assert "PLAIN" in kw.get("AUTH", "").upper().split(), kw
        expect(c.cmd("MAIL FROM:<alice@example.net>"), 530, "5.7.0 Authentication required")
        expect(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
        expect(c.cmd(b64("alice")), 334, "UGFzc3dvcmQ6")
        expect(c.cmd(b64(USERS["alice"])), 235, OK)
        r, qid = v.send_mail("alice@example.net", rcpt, "Subject: subs\n\nx\n", client=c)
        assert qid, r
    v.wait_maildir(rcpt)


def test_auth_over_plaintext():
    v = auth_server("plaintext")
    with v.smtp() as c:
        kw = c.ehlo().keywords()
        assert "PLAIN" in kw.get("AUTH", "").upper().split(), f"no AUTH with auth_over_plaintext: {kw}"
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)
    with v.smtp(port=v.submission_port) as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<alice@example.net>"), 530, enhanced="5.7.0")
        expect(c.cmd("AUTH PLAIN " + plain("carol", USERS["carol"])), 235, OK)
        expect(c.cmd("MAIL FROM:<carol@example.net>"), 250)


def swaks(port, *args):
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test", *args],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def test_swaks_auth_over_starttls():
    v = auth_server()
    for mech in ("PLAIN", "LOGIN"):
        rcpt = f"swaks-{mech.lower()}@example.org"
        rc, out = swaks(v.submission_port, "--tls", "--auth", mech, "--auth-user", "alice",
                        "--auth-password", USERS["alice"], "--from", "alice@example.net", "--to",
                        rcpt)
        assert rc == 0, out[-3000:]
        assert re.search(r"<~\s+235 2\.7\.0 Authentication successful", out), out[-3000:]
        assert re.search(r"<~\s+250 2\.0\.0 Ok: queued as [0-9A-F]{16}", out), out[-3000:]
        v.wait_maildir(rcpt)
    rc, out = swaks(v.submission_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                    "--auth-password", "nope", "--to", "never@example.org")
    assert rc != 0 and re.search(r"<~\*\s+535 5\.7\.8", out), out[-3000:]


def test_auth_stage_sees_the_user():
    v = auth_server()
    c, _ = tls_session(v, v.submission_port)
    with c:
        expect(c.cmd("AUTH PLAIN " + plain("bob", USERS["bob"])), 535, "5.7.8 bob is banned")
        # the rule's reject means bob is not authenticated
        expect(c.cmd("MAIL FROM:<bob@example.net>"), 530, enhanced="5.7.0")
        expect(c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"])), 235, OK)
        expect(c.cmd("MAIL FROM:<alice@example.net>"), 250)
    v.wait_log(r"stage=auth verdict=reject")


run([test_no_auth_before_tls, test_auth_plain_initial_response, test_auth_plain_after_challenge,
     test_auth_login, test_failures_are_delayed, test_cancel_and_bad_base64,
     test_submission_requires_auth, test_submissions_implicit_tls_auth, test_auth_over_plaintext,
     test_swaks_auth_over_starttls, test_auth_stage_sees_the_user])
