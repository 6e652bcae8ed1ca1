#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Quarantine release over SMTP ([quarantine] release_to) against Postfix's
smtp-sink as the receiving MTA: offline (`vpsctl quarantine release ID`)
and through a running vpsd (gRPC Admin/ReleaseQuarantined, and vpsctl
--server).  The sink must get the stored message exactly (a line that is a
lone ".", lines starting with "." — dot-stuffing round trip) with the
stored envelope; a recipient refused, a 4xx, nobody listening, a server
that never greets, and release_to unset each end in the documented status
and exit code, and the message stays in the quarantine."""
import json, os, socket, subprocess, sys, threading

sys.path.insert(0, os.path.dirname(__file__))
import test_grpc as T
from postfixlib import SmtpSink, free_port
from taplib import run, tmpdir

VPSCTL = T.VPSCTL

# LF line ends as a file on disk has them; the sink's dump has LF too.
MSG = ("From: Alice <alice@example.net>\n"
       "To: bob@example.org\n"
       "Subject: hold me please\n"
       "Message-ID: <release.1@example.net>\n"
       "\n"
       "first line\n"
       ".\n"
       "..two dots\n"
       ".one dot\n"
       "\n"
       "last line\n")
SENDER = "alice@example.net"
RCPTS = ["bob@example.org", "carol@example.org"]


def ctl(*args, ok=True):
    p = subprocess.run([VPSCTL, *args], capture_output=True, timeout=60)
    if ok:
        assert p.returncode == 0, (args, p.returncode, p.stderr.decode())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def set_release_to(conf, value):
    """[quarantine] release_to = value (None: no such key)."""
    lines = [l for l in open(conf).read().split("\n") if not l.startswith("release_to =")]
    out = []
    for l in lines:
        out.append(l)
        if l.strip() == "[quarantine]" and value is not None:
            out.append(f"release_to = {value}")
    T.write(conf, "\n".join(out))


def quarantine(conf, d, sender=SENDER, rcpts=RCPTS):
    """Quarantine MSG with `vpsctl run --apply`; returns its id."""
    path = os.path.join(d, f"msg{len(os.listdir(d))}.eml")
    with open(path, "w") as f:
        f.write(MSG)
    before = quarantine_ids(conf)
    args = ["-c", conf, "run", path, "--from", sender, "--client-ip", "192.0.2.1", "--apply",
            "--json"]
    for r in rcpts:
        args += ["--rcpt", r]
    _, out, _ = ctl(*args)
    r = json.loads(out)
    assert r["verdict"] == "quarantine", r
    # ids sort by time only to the second: take the new one, not the last
    new = [i for i in quarantine_ids(conf) if i not in before]
    assert len(new) == 1, new
    return new[0]


def quarantine_ids(conf):
    return [e["id"] for e in json.loads(ctl("-c", conf, "quarantine", "list", "--json")[1])]


def sink(d, name, **kw):
    """An smtp-sink in d/name (made here), to be used with `with`."""
    os.makedirs(os.path.join(d, name))
    return SmtpSink(os.path.join(d, name), **kw)


def offline_conf(release_to=None):
    d = tmpdir()
    T.write(os.path.join(d, "rules.vsl"),
            'data { rule "hold" when subject =~ /hold me/i => quarantine "spam" }\n')
    conf = os.path.join(d, "vps.conf")
    T.write(conf, "[vpsd]\nrules = rules.vsl\n[quarantine]\ndir = q\nnames = spam\n")
    set_release_to(conf, release_to)
    return d, conf


def assert_delivered(m, sender=SENDER, rcpts=RCPTS):
    assert m.mail_from == sender, m.mail_args
    assert m.rcpts == rcpts, m.rcpt_args
    assert m.message == MSG, repr(m.message)


def in_store(conf, qid):
    return qid in quarantine_ids(conf)


class Scripted:
    """A scripted SMTP server on a free port: `replies` maps a command verb
    (or "RCPT:address") to its reply; greet=False never sends the greeting."""

    def __init__(self, replies=None, greet=True):
        self.replies = replies or {}
        self.greet = greet
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.commands = []
        self.data = b""
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        f = c.makefile("rb")
        if not self.greet:
            f.read()  # until the client gives up
            return
        c.sendall(b"220 scripted ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode().rstrip("\r\n")
            self.commands.append(cmd)
            verb = cmd.split(" ")[0].split(":")[0].upper()
            key = verb
            if verb == "RCPT":
                key = "RCPT:" + cmd.split("<", 1)[1].split(">", 1)[0]
            reply = self.replies.get(key, self.replies.get(verb))
            if verb == "DATA" and reply is None:
                c.sendall(b"354 go ahead\r\n")
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                    self.data += l
                reply = self.replies.get(".", "250 2.0.0 Ok: queued as SCRIPTED")
            if reply is None:
                reply = "221 2.0.0 Bye" if verb == "QUIT" else "250 2.0.0 Ok"
            c.sendall(reply.encode() + b"\r\n")
            if verb == "QUIT":
                c.close()
                return

    def close(self):
        self.sock.close()


# ---- offline: vpsctl quarantine release ID -----------------------------------

def test_offline_release_exact_message_and_envelope():
    d = tmpdir()
    with sink(d, "sink") as sk:
        qd, conf = offline_conf(f"[127.0.0.1]:{sk.port}")
        qid = quarantine(conf, qd)
        _, out, err = ctl("-c", conf, "quarantine", "release", qid)
        assert out.startswith(f"released {qid}: 250"), (out, err)
        assert_delivered(sk.wait_messages(1)[0])
        # the request cannot ask for a delete: the message stays
        assert in_store(conf, qid)
        # the null sender goes out as MAIL FROM:<>
        qid2 = quarantine(conf, qd, sender="", rcpts=["bob@example.org"])
        ctl("-c", conf, "quarantine", "release", qid2)
        # (the sink's files are ordered by mtime, which may tie: pick by envelope)
        m = [m for m in sk.wait_messages(2) if m.mail_from != SENDER]
        assert len(m) == 1, m
        m = m[0]
        assert m.mail_args.split()[0] == "<>", m.mail_args
        assert m.rcpts == ["bob@example.org"] and m.message == MSG, m


def test_offline_rejected_recipient_named():
    d = tmpdir()
    with sink(d, "sink", hard_reject=("RCPT",)) as sk:
        qd, conf = offline_conf(f"127.0.0.1:{sk.port}")
        qid = quarantine(conf, qd)
        rc, out, err = ctl("-c", conf, "quarantine", "release", qid, ok=False)
        assert rc == 1 and out == "", (rc, out, err)
        assert "RCPT TO" in err and "<bob@example.org>: 5" in err, err
        assert "<carol@example.org>: 5" in err, err
        assert in_store(conf, qid)


def test_offline_partial_recipients():
    s = Scripted({"RCPT:carol@example.org": "550 5.1.1 No such user carol"})
    try:
        qd, conf = offline_conf(f"127.0.0.1:{s.port}")
        qid = quarantine(conf, qd)
        _, out, err = ctl("-c", conf, "quarantine", "release", qid)
        assert out == f"released {qid}: 250 2.0.0 Ok: queued as SCRIPTED\n", out
        assert "refused <carol@example.org>: 550 5.1.1 No such user carol" in err, err
        assert s.commands[1:5] == ["MAIL FROM:<alice@example.net>", "RCPT TO:<bob@example.org>",
                                   "RCPT TO:<carol@example.org>", "DATA"], s.commands
        assert s.commands[0].startswith("EHLO ") and s.commands[-1] == "QUIT", s.commands
        # on the wire: CRLF everywhere, every leading dot doubled
        want = MSG.replace("\n.", "\n..").replace("\n", "\r\n").encode()
        assert s.data == want, s.data
    finally:
        s.close()


def test_offline_helo_fallback_and_multiline_replies():
    s = Scripted({"EHLO": "502 5.5.2 Error: command not recognized",
                  "MAIL": "250-2.1.0 first line\r\n250-2.1.0 second line\r\n250 2.1.0 Ok",
                  ".": "250-2.0.0 queued\r\n250 2.0.0 as MULTI"})
    try:
        qd, conf = offline_conf(f"127.0.0.1:{s.port}")
        qid = quarantine(conf, qd, rcpts=["bob@example.org"])
        _, out, _ = ctl("-c", conf, "quarantine", "release", qid)
        assert out == f"released {qid}: 250 2.0.0 queued / as MULTI\n", out
        assert s.commands[0].startswith("EHLO ") and s.commands[1].startswith("HELO "), s.commands
    finally:
        s.close()


def test_offline_nobody_listening():
    qd, conf = offline_conf(f"127.0.0.1:{free_port()}")
    qid = quarantine(conf, qd)
    rc, _, err = ctl("-c", conf, "quarantine", "release", qid, ok=False)
    assert rc == 1 and "connect to" in err and "refused" in err, (rc, err)
    assert in_store(conf, qid)


def test_offline_release_to_unset():
    qd, conf = offline_conf(None)
    qid = quarantine(conf, qd)
    rc, _, err = ctl("-c", conf, "quarantine", "release", qid, ok=False)
    assert rc == 1 and "[quarantine] release_to is not set" in err, (rc, err)
    rc, _, err = ctl("-c", conf, "quarantine", "release", "20200101T000000Z-0123456789ab",
                     ok=False)
    assert rc == 1, (rc, err)
    rc, _, err = ctl("-c", conf, "quarantine", "release", "../../etc/passwd", ok=False)
    assert rc == 1, (rc, err)


# ---- online: gRPC ReleaseQuarantined and vpsctl --server --------------------

def release(v, qid, timeout=10):
    A = T.stubs()["A"]
    return T.unary(v.admin, "/vps.v1.Admin/ReleaseQuarantined",
                   A.ReleaseQuarantinedRequest(id=qid), A.ReleaseQuarantinedResponse,
                   timeout=timeout)


def reload_with(v, release_to):
    A = T.stubs()["A"]
    set_release_to(v.conf, release_to)
    T.admin_call(v, "Reload", A.ReloadRequest(), A.ReloadResponse)


def test_grpc_release():
    d = tmpdir()
    v = T.Vpsd()
    server = f"127.0.0.1:{v.admin_port}"
    try:
        qid = quarantine(v.conf, d)
        # release_to unset: FAILED_PRECONDITION, as before
        code, det = T.status_of(lambda: release(v, qid))
        assert code == "FAILED_PRECONDITION" and "release_to" in det, (code, det)
        rc, _, err = ctl("-c", v.conf, "--server", server, "quarantine", "release", qid, ok=False)
        assert rc == 1 and "release_to" in err, (rc, err)

        with sink(d, "sink") as sk:
            reload_with(v, f"[127.0.0.1]:{sk.port}")
            r = release(v, qid)
            assert r.reply.startswith("250 2.0.0"), r
            assert_delivered(sk.wait_messages(1)[0])
            _, out, _ = ctl("-c", v.conf, "--server", server, "quarantine", "release", qid)
            assert out.startswith(f"released {qid}: 250"), out
            assert_delivered(sk.wait_messages(2)[1])
        v.wait_log(f"quarantine {qid} released to [127.0.0.1]:")
        assert in_store(v.conf, qid)

        # every recipient refused (5xx): FAILED_PRECONDITION naming them
        with sink(d, "reject", hard_reject=("RCPT",)) as sk:
            reload_with(v, f"127.0.0.1:{sk.port}")
            code, det = T.status_of(lambda: release(v, qid))
            assert code == "FAILED_PRECONDITION", (code, det)
            assert "RCPT TO" in det and "<bob@example.org>: 5" in det, det
            rc, _, err = ctl("-c", v.conf, "--server", server, "quarantine", "release", qid,
                             ok=False)
            assert rc == 1 and "<carol@example.org>: 5" in err, (rc, err)

        # 4xx at MAIL: UNAVAILABLE with the server's reply
        with sink(d, "soft", soft_reject=("MAIL",)) as sk:
            reload_with(v, f"127.0.0.1:{sk.port}")
            code, det = T.status_of(lambda: release(v, qid))
            assert code == "UNAVAILABLE" and "MAIL FROM:<alice@example.net>: 4" in det, (code, det)

        # nobody listening: UNAVAILABLE, and vpsctl does not blame vpsd
        reload_with(v, f"127.0.0.1:{free_port()}")
        code, det = T.status_of(lambda: release(v, qid))
        assert code == "UNAVAILABLE" and "connect to" in det, (code, det)
        rc, _, err = ctl("-c", v.conf, "--server", server, "quarantine", "release", qid, ok=False)
        assert rc == 1 and "UNAVAILABLE" in err and "cannot reach vpsd" not in err, (rc, err)

        # a server that never greets: the call's deadline bounds the release
        s = Scripted(greet=False)
        try:
            reload_with(v, f"127.0.0.1:{s.port}")
            code, det = T.status_of(lambda: release(v, qid, timeout=2))
            assert code == "DEADLINE_EXCEEDED", (code, det)
            v.wait_log(f"release of quarantine {qid} to 127.0.0.1:{s.port} failed", timeout=10)
        finally:
            s.close()
        # vpsd is still fine, the message still there
        assert in_store(v.conf, qid)
        code, _ = T.status_of(lambda: release(v, "20200101T000000Z-0123456789ab"))
        assert code == "NOT_FOUND", code
    finally:
        assert v.stop() == 0


if __name__ == "__main__":
    run([test_offline_release_exact_message_and_envelope, test_offline_rejected_recipient_named,
         test_offline_partial_recipients, test_offline_helo_fallback_and_multiline_replies,
         test_offline_nobody_listening, test_offline_release_to_unset, test_grpc_release])
