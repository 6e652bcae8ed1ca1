#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The postq stage in vsmtpd's queue runner: run once after the commit,
before delivery.  reject -> every recipient failed and a DSN to the (local)
sender; discard -> gone, nothing delivered; quarantine -> in `vpsctl
quarantine list`, not delivered; add_header -> the delivered copy has it
(the queued file was rewritten, the envelope says "postq": true, and
after a restart postq does not run again); and a
slow `exec` connector in postq does not delay the client's 250."""
import json, os, re, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run
from vsmtpdlib import Vsmtpd, dot_stuff


def message(subject, body="Hello.\r\n"):
    return (f"From: Alice <alice@src.test>\r\nTo: Bob <bob@dst.test>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@src.test>\r\n\r\n{body}").encode()


def server(rules, **settings):
    s = {"queue": {"run_interval": "1s"}}
    s.update(settings)
    return Vsmtpd(rules=rules, settings=s).start()


def deliver(v, rcpts, data, sender="alice@src.test"):
    """One transaction; the reply to the end of data and when it came."""
    with v.smtp() as c:
        c.ehlo("client.test")
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        for rc in rcpts:
            assert c.cmd(f"RCPT TO:<{rc}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data) + b".\r\n")
        r = c.reply()
        at = time.monotonic()
        c.cmd("QUIT")
    return r, at


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def queue_empty(v):
    return v.queue_ids() == []


def test_reject_bounces_to_sender():
    v = server('postq { rule "r" when subject =~ /reject me/ => reject 550 5.7.1 "Not after all" }\n')
    r, _ = deliver(v, ["bob@dst.test", "carol@dst.test"], message("reject me"))
    assert r.code == 250, r
    dsns = v.wait_maildir("alice@src.test", timeout=20)
    assert len(dsns) == 1, dsns
    dsn = dsns[0]
    assert b"multipart/report" in dsn and b"Not after all" in dsn, dsn[:2000]
    assert b"bob@dst.test" in dsn and b"carol@dst.test" in dsn, dsn[:2000]
    assert v.maildir_messages("bob@dst.test") == []
    assert v.maildir_messages("carol@dst.test") == []
    wait_until(lambda: queue_empty(v), 10, "an empty queue")
    v.wait_log(r"postq: rejected by rule \"r\"")
    v.stop()


def test_discard_gone():
    v = server('postq { rule "d" when subject =~ /discard me/ => discard }\n')
    r, _ = deliver(v, ["bob@dst.test"], message("discard me"))
    assert r.code == 250, r
    v.wait_log(r"postq: discarded by rule \"d\"")
    wait_until(lambda: queue_empty(v), 10, "an empty queue")
    time.sleep(1.5)
    assert v.all_delivered() == [], v.all_delivered()
    rc, out, err = v.ctl("quarantine", "list", "--json")
    assert json.loads(out) == [], out
    v.stop()


def test_quarantine_not_delivered():
    v = server('postq { rule "q" when subject =~ /quarantine me/ => quarantine "spam" }\n')
    r, _ = deliver(v, ["bob@dst.test"], message("quarantine me"))
    assert r.code == 250, r
    v.wait_log(r"postq: quarantined as ")

    def listed():
        rc, out, err = v.ctl("quarantine", "list", "--json")
        return json.loads(out)
    entries = wait_until(listed, 10, "a quarantine entry")
    assert len(entries) == 1 and entries[0]["name"] == "spam", entries
    assert entries[0]["subject"] == "quarantine me", entries
    wait_until(lambda: queue_empty(v), 10, "an empty queue")
    time.sleep(1.5)
    assert v.all_delivered() == [], v.all_delivered()
    v.stop()


def test_add_header_in_delivered_copy():
    v = server('postq { rule "h" => add_header "X-Postq" "checked" }\n')
    r, _ = deliver(v, ["bob@dst.test"], message("headers"))
    assert r.code == 250, r
    got = v.wait_maildir("bob@dst.test", timeout=20)
    assert len(got) == 1, got
    assert b"\nX-Postq: checked\n" in got[0], got[0][:800]
    assert got[0].count(b"X-Postq:") == 1, got[0][:800]
    v.wait_log(r"postq: message rewritten")
    v.stop()


def test_tempfail_defers_and_runs_again():
    v = server('postq { rule "t" when subject =~ /later/ => tempfail 451 4.7.1 "Scanner busy" }\n',
               queue={"run_interval": "1s", "retry_min": "1s", "retry_max": "1s"})
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("later"))
    assert r.code == 250, r
    v.wait_log(r"postq: deferred by rule \"t\"", count=2, timeout=15)  # ran again at the retry
    env = v.envelope(qid)
    assert env["postq"] is False and env["attempts"] >= 1, env
    rcpt = env["recipients"][0]
    assert rcpt["state"] == "deferred" and "Scanner busy" in rcpt["result"], rcpt
    assert v.all_delivered() == [], v.all_delivered()
    v.stop()


def test_restart_does_not_run_postq_twice():
    """A message that passed postq (and was rewritten) is held by the
    default route; after a restart and a release it is delivered with the
    header once: postq did not run again."""
    v = server('postq { rule "h" => add_header "X-Postq" "checked" }\n',
               delivery={"default": "hold"},
               queue={"run_interval": "1s", "retry_min": "1s"})
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("restart"))
    assert r.code == 250, r
    env = v.wait_queued(qid, timeout=10, area="hold")
    wait_until(lambda: os.path.exists(os.path.join(v.queue_dir, "hold", qid + ".eml")), 5,
               "the held message")
    assert env["postq"] is True, env
    held = v.queued_message(qid, area="hold")
    assert held.count(b"X-Postq: checked\r\n") == 1, held[:800]
    assert env["size"] == len(held), (env["size"], len(held))
    v.stop()
    v.settings["delivery"] = {"default": "maildir:{dir}/mail/%d/%l"}
    v.start()
    v.ctl("queue", "release", qid)  # due again after retry_min (held = one attempt)
    got = v.wait_maildir("bob@dst.test", timeout=20)
    assert len(got) == 1, got
    assert got[0].count(b"X-Postq:") == 1, got[0][:800]
    v.stop()


def test_slow_connector_does_not_delay_250():
    v = Vsmtpd(rules='postq { rule "slow" => call slow }\n',
               settings={"queue": {"run_interval": "1s"}})
    done = os.path.join(v.dir, "connector-done")
    path = os.path.join(v.dir, "slow.sh")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\ncat >/dev/null\nsleep 3\ntouch '{done}'\n")
    os.chmod(path, 0o755)
    v.settings["connector slow"] = {"type": "exec", "command": path, "timeout": "20s"}
    v.start()
    start = time.monotonic()
    r, at = deliver(v, ["bob@dst.test"], message("slow"))
    assert r.code == 250, r
    # the 250 came before the connector finished
    assert not os.path.exists(done), "the connector finished before the 250"
    assert at - start < 2.5, at - start
    got = v.wait_maildir("bob@dst.test", timeout=20)
    assert len(got) == 1, got
    assert os.path.exists(done), "delivered before postq's connector finished"
    v.stop()


if __name__ == "__main__":
    run([test_reject_bounces_to_sender, test_discard_gone, test_quarantine_not_delivered,
         test_add_header_in_delivered_copy, test_tempfail_defers_and_runs_again,
         test_restart_does_not_run_postq_twice,
         test_slow_connector_does_not_delay_250])
