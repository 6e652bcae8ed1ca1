#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's TLS policy per destination and AUTH to relays
(mta/delivery-remote.c: [delivery] tls_policy, tls_ca, tls_policy_map,
relay_auth_file) against real peers: dnsmasq resolving mx.test (and the MX
of tls.test) to 127.0.0.1, a sandboxed Postfix with mx.test's certificate
(signed by a test CA) relaying to smtp-sink, and a second vsmtpd with
passwd_file and tls_cert as an AUTH-requiring relay.

  - relay with `encrypt` from tls_policy_map (default none): delivered,
    Postfix logs the TLS connection;
  - `verify` with a CA that did not sign: deferred with 4.7.5, nothing
    reaches Postfix in plaintext; with the right CA and name (MX delivery,
    the domain matched in the map): delivered, verified;
  - encrypt to a server without STARTTLS: deferred, nothing sent;
  - a map line that does not parse: every remote recipient deferred with
    FILE:LINE; a relay_auth_file readable by others: refused (deferred);
  - AUTH PLAIN to the second vsmtpd over STARTTLS with the file's
    credentials; a wrong password: deferred with the server's 535; with
    policy none the credentials are not sent."""
import os, re, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import test_smtp_out as O
import test_vsmtpd_remote_delivery as R
from taplib import read_text, run, spawn, tmpdir, wait_log_lines
from test_resolver import DNSMASQ, free_port, probe
from vsmtpdlib import HOSTNAME, Vsmtpd, make_cert, make_passwd


_dns = None


def dns_address():
    """dnsmasq for mx.test (the certificates' name) and tls.test (MX mx.test)."""
    global _dns
    if _dns is None:
        port = free_port()
        logfile = os.path.join(tmpdir(), "dnsmasq.log")
        cmd = [DNSMASQ, "-k", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=",
               f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
               "--log-queries", f"--log-facility={logfile}", "--cache-size=0",
               "--mx-host=tls.test,mx.test,10",
               "--host-record=mx.test,127.0.0.1",
               "--local=/test/"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        proc = spawn(cmd, bufsize=0)
        wait_log_lines(lambda: read_text(logfile), r"started, version", what="dnsmasq")
        deadline = time.time() + 10
        while probe(f"127.0.0.1:{port}", 1000, "a", "mx.test")[0]["outcome"] != "ok":
            assert proc.poll() is None, read_text(logfile)
            assert time.time() < deadline, "dnsmasq does not answer"
            time.sleep(0.1)
        _dns = (proc, f"127.0.0.1:{port}")
    return _dns[1]


def client(port, delivery, rules=""):
    """The vsmtpd under test: local.test is a maildir, the rest goes out."""
    d = tmpdir()
    rules = ("delivery {\n"
             f'  rule "local" when rcpt.domain == "local.test" => deliver maildir "{d}/mail/%d/%l"\n'
             f"{rules}"
             "}\n")
    settings = {"queue": {"run_interval": "500ms", "retry_min": "2s", "retry_max": "4s"},
                "delivery": {"default": "mx", "smtp_port": str(port), **delivery},
                "dns": {"nameserver": dns_address(), "timeout": "2s"}}
    # not mx.test: the receiving side is mx.test, and a loop is not the point
    settings["vsmtpd"] = {"hostname": "client.test"}
    return Vsmtpd(rules=rules, dir=d, settings=settings).start()


def send(v, rcpt, subject):
    msg = (f"From: Alice <alice@local.test>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@local.test>\r\n\r\nHello.\r\n")
    r, qid = v.send_mail("alice@local.test", [rcpt], msg)
    assert r.code == 250 and qid, r
    return qid


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_encrypt_from_map_delivered():
    s = O.sink()
    pf = O.postfix(relay=s)
    d = tmpdir()
    tmap = write(os.path.join(d, "tls_map"),
                 f"# relay target\n\n[mx.test]:{pf.port}   encrypt\nother.test none\n")
    # plain.test goes to a target the map does not name: the default, none
    rule = (f'  rule "plain" when rcpt.domain == "plain.test" => '
            f'deliver relay "[127.0.0.1]:{pf.port}"\n')
    v = client(pf.port, {"default": f"relay:[mx.test]:{pf.port}", "tls_policy": "none",
                         "tls_policy_map": tmap}, rules=rule)
    try:
        send(v, "bob@dst.test", "encrypt relay")
        (m,) = s.wait_messages(1, timeout=30)
        assert m.rcpts == ["bob@dst.test"], m.rcpts
        pf.wait_log(r"Anonymous TLS connection established from", timeout=10)
        v.wait_log(r"to=<bob@dst\.test> delivered", timeout=10)
        send(v, "pat@plain.test", "plain relay")
        s.wait_messages(2, timeout=30)
        v.wait_log(r"to=<pat@plain\.test> delivered", timeout=10)
        time.sleep(0.5)
        n = pf.log().count("TLS connection established from")
        assert n == 1, (n, pf.log()[-2000:])
    finally:
        v.stop()
        pf.stop()
        s.stop()


def test_verify_wrong_ca_deferred_then_right_ca_delivered():
    c = O.certs()
    s = O.sink()
    pf = O.postfix(relay=s)
    d = tmpdir()
    # MX delivery to tls.test (MX mx.test): the domain is what the map matches
    tmap = write(os.path.join(d, "tls_map"), "tls.test verify\n")
    v = client(pf.port, {"tls_policy": "may", "tls_policy_map": tmap,
                         "tls_ca": os.path.join(c, "stranger.pem")})
    try:
        qid = send(v, "carol@tls.test", "verify stranger")
        v.wait_log(r"to=<carol@tls\.test> deferred: .*4\.7\.5", timeout=20)
        time.sleep(1)
        assert qid in v.queue_ids(), v.queue_ids()
        assert s.messages() == [], s.messages()
        # never plaintext: Postfix saw a TLS attempt at most, no MAIL
        assert "from=<alice@local.test>" not in pf.log(), pf.log()[-2000:]
    finally:
        v.stop()
    # the same queue with the right CA: delivered on the retry, verified
    v.settings["delivery"]["tls_ca"] = os.path.join(c, "ca.pem")
    v.start()
    try:
        (m,) = s.wait_messages(1, timeout=30)
        assert m.rcpts == ["carol@tls.test"], m.rcpts
        R.wait_until(lambda: v.queue_ids() == [], 20, "queue empty")
        pf.wait_log(r"TLS connection established from", timeout=10)
    finally:
        v.stop()
        pf.stop()
        s.stop()


def test_bad_map_and_open_auth_file_defer():
    s = O.sink()
    d = tmpdir()
    # encrypt to a server without STARTTLS (smtp-sink): deferred, nothing sent
    v = client(s.port, {"default": f"relay:[127.0.0.1]:{s.port}", "tls_policy": "encrypt"})
    try:
        qid = send(v, "bob@dst.test", "no starttls")
        v.wait_log(r"to=<bob@dst\.test> deferred: .*TLS is required", timeout=20)
        assert qid in v.queue_ids() and s.messages() == [], s.messages()
    finally:
        v.stop()
    # bad files are refused by --check and at start, with FILE:LINE ...
    bad = write(os.path.join(d, "tls_map"), "# ok\nok.test may\n[x.test]:25 sometimes\n")
    auth_open = write(os.path.join(d, "relay_auth"), f"[127.0.0.1]:{s.port} alice pw\n", 0o640)
    auth_short = write(os.path.join(d, "relay_auth2"), f"[127.0.0.1]:{s.port} alice\n", 0o600)
    for key, path, want in [("tls_policy_map", bad, r"tls_map:3: expected a policy"),
                            ("relay_auth_file", auth_open,
                             r"relay_auth: .*accessible by group or others \(mode 0640"),
                            ("relay_auth_file", auth_short,
                             r"relay_auth2:1: expected \[HOST\]:PORT USER PASSWORD")]:
        v = Vsmtpd(dir=tmpdir(), settings={"delivery": {
            "default": f"relay:[127.0.0.1]:{s.port}", key: path}})
        rc, out = v.check()
        assert rc == 1 and re.search(want, out), (key, rc, out)
        try:
            v.start()
            raise AssertionError(f"vsmtpd started with a bad {key}")
        except AssertionError as e:
            assert re.search(want, str(e)), e
    # ... and one that breaks while vsmtpd runs defers, never a weaker policy
    good = write(os.path.join(d, "tls_map_live"), "ok.test may\n")
    v = client(s.port, {"default": f"relay:[127.0.0.1]:{s.port}", "tls_policy_map": good})
    try:
        write(good, "# broken while running\n[x.test]:25 sometimes\n")
        send(v, "bob@dst.test", "bad map")
        v.wait_log(r"to=<bob@dst\.test> deferred: 451 4\.3\.5 .*tls_map_live:2: expected a policy",
                   timeout=20)
        time.sleep(1)
        assert s.messages() == [], s.messages()
    finally:
        v.stop()
        s.stop()


def relay_server():
    """A second vsmtpd as an AUTH-requiring smarthost: mx.test, STARTTLS."""
    d = tmpdir()
    cert, key = make_cert(d, HOSTNAME)
    make_passwd(os.path.join(d, "passwd"), {"alice": "s3cret"})
    srv = Vsmtpd(settings={"vsmtpd": {"tls_cert": cert, "tls_key": key,
                                      "passwd_file": "passwd",
                                      "auth_failure_delay": "0s"}}, dir=d).start()
    return srv, cert


def test_auth_to_relay():
    srv, cert = relay_server()
    d = tmpdir()
    target = f"[mx.test]:{srv.port}"
    good = write(os.path.join(d, "auth_good"), f"# smarthost\n{target} alice s3cret\n", 0o600)
    bad = write(os.path.join(d, "auth_bad"), f"{target} alice wrong\n", 0o600)
    try:
        # verify against the relay host name, with the server's own certificate as CA
        v = client(srv.port, {"default": f"relay:{target}", "tls_policy": "verify",
                              "tls_ca": cert, "relay_auth_file": good})
        try:
            send(v, "dave@far.test", "auth ok")
            srv.wait_maildir("dave@far.test", 1, timeout=30)
            srv.wait_log(r"auth.*alice|alice.*auth", timeout=10)
            v.wait_log(r"authenticated to .* as alice", timeout=10)
        finally:
            v.stop()
        v = client(srv.port, {"default": f"relay:{target}", "tls_policy": "encrypt",
                              "relay_auth_file": bad})
        try:
            qid = send(v, "erin@far.test", "auth wrong")
            v.wait_log(r"to=<erin@far\.test> deferred: .*535", timeout=30)
            assert qid in v.queue_ids(), v.queue_ids()
        finally:
            v.stop()
        # policy none: the credentials are not sent (no TLS, so no AUTH)
        v = client(srv.port, {"default": f"relay:{target}", "tls_policy": "none",
                              "relay_auth_file": good})
        try:
            send(v, "frank@far.test", "auth none")
            srv.wait_maildir("frank@far.test", 1, timeout=30)
            assert "as alice" not in v.log().split("auth none")[-1], v.log()[-2000:]
            assert "authenticated to" not in v.log(), v.log()[-2000:]
        finally:
            v.stop()
    finally:
        srv.stop()


def cleanup():
    if _dns is not None and _dns[0].poll() is None:
        _dns[0].terminate()


if __name__ == "__main__":
    try:
        run([test_encrypt_from_map_delivered, test_verify_wrong_ca_deferred_then_right_ca_delivered,
             test_bad_map_and_open_auth_file_defer, test_auth_to_relay])
    finally:
        cleanup()
