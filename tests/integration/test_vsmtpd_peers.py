#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd with real mail peers: a sandboxed Postfix 3.7 (postfixlib) relays
to vsmtpd (relayhost = [127.0.0.1]:VSMTPD_PORT) what swaks submits to it,
and Postfix's load generator smtp-source sends 50 messages over 5 parallel
sessions; everything must land in the maildir, once."""
import os, re, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir
from postfixlib import Postfix, swaks, eod_reply
from vsmtpdlib import Vsmtpd


def server():
    return Vsmtpd(settings={"queue": {"run_interval": "1s"}}).start()


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def test_postfix_relays_into_vsmtpd():
    v = server()
    pf = Postfix(tmpdir(), relay_port=v.port)
    pf.start()
    try:
        body = ("Sent through Postfix.\n.a line starting with a dot\n..two dots\n"
                "caf\u00e9 in UTF-8\n" + "x" * 990 + "\n")
        rc, out = swaks(pf.port, from_="alice@src.test", to="bob@dst.test",
                        h_Subject="via postfix", body=body, ehlo="client.test")
        assert rc == 0, out
        assert eod_reply(out)[0] == 250, out
        msgs = v.wait_maildir("bob@dst.test", timeout=30)
        assert len(msgs) == 1, msgs
        m = msgs[0]
        assert m.startswith(b"Return-Path: <alice@src.test>\nDelivered-To: bob@dst.test\n"), m[:300]
        # vsmtpd's Received on top names Postfix's HELO; Postfix's own follows.
        received = re.findall(rb"(?m)^Received: from (\S+)", m)
        assert received[:2] == [b"sandbox.example", b"client.test"], received
        text = m.decode("utf-8")
        assert "\nSubject: via postfix\n" in text, text[:1500]
        sent_body = body.encode("utf-8")
        assert m.split(b"\n\n", 1)[1].rstrip(b"\n") == sent_body.rstrip(b"\n"), m[-1200:]
        # Postfix saw vsmtpd's final reply and is done with the message.
        lines = pf.wait_log(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{v.port}.*status=sent "
                            r"\(250 2\.0\.0 Ok: queued as [0-9A-F]{16}\)", timeout=20)
        qid = re.search(r"queued as ([0-9A-F]{16})", lines[0]).group(1)
        pf.wait_queue_empty(20)
        # the queue id on the delivery line (as "id=ID" or "ID:")
        v.wait_log(rf"\b{qid}\b.* to=<bob@dst\.test> delivered maildir=")
        wait_until(lambda: v.queue_files("incoming") == [], 10, "vsmtpd queue empty")
    finally:
        pf.stop()
        v.stop()


def test_smtp_source_50_messages():
    v = server()
    p = subprocess.run(["smtp-source", "-s", "5", "-m", "50", "-c", "-f", "a@src.test", "-t",
                        "b@dst.test", f"127.0.0.1:{v.port}"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr, v.log()[-2000:])
    assert "smtp-source: fatal" not in p.stderr and "error" not in p.stderr.lower(), p.stderr
    v.wait_maildir("b@dst.test", count=50, timeout=40)
    wait_until(lambda: v.queue_files("incoming") == [], 20, "vsmtpd queue empty")
    msgs = v.maildir_messages("b@dst.test")
    assert len(msgs) == 50, len(msgs)
    assert all(m.startswith(b"Return-Path: <a@src.test>\nDelivered-To: b@dst.test\n") for m in msgs)
    queued = set(re.findall(r"([0-9A-F]{16}): queued from=<a@src\.test> nrcpt=1 ", v.log()))
    assert len(queued) == 50, len(queued)
    delivered = set(re.findall(r"\b([0-9A-F]{16})\b[^\n]*? to=<b@dst\.test> delivered ", v.log()))
    assert delivered == queued, (len(delivered), len(queued))
    assert len(v.all_delivered()) == 50, len(v.all_delivered())
    v.stop()


if __name__ == "__main__":
    run([test_postfix_relays_into_vsmtpd, test_smtp_source_50_messages])
