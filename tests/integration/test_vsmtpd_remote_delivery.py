#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's remote delivery (mta/delivery-remote.c) against real peers: a
dnsmasq on 127.0.0.1 and a free port serving MX records for the test
domains (all pointing at 127.0.0.1), and smtp-sink on a free port as every
MX host ([delivery] smtp_port, since MX records carry no port).

  - `mx` delivered to the sink (its -d dump), and `deliver relay
    "[127.0.0.1]:PORT"` from a delivery rule (no DNS);
  - 4xx from the sink: deferred, retried with the backoff of [queue]
    retry_min/retry_max, delivered once the sink takes it;
  - 5xx: a DSN queued to the sender (a local maildir domain by a delivery
    rule), delivered there and parsed with Python's email module;
  - null MX (RFC 7505) and NXDOMAIN: one DSN with 5.1.10 and 5.1.2;
  - never a bounce to <>;
  - kill -9 while the sink holds the DATA reply, restart: the message
    reaches the sink once or twice, never zero times."""
import email, email.policy, os, re, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import postfixlib as P
from taplib import read_text, run, spawn, tmpdir, wait_log_lines
from test_resolver import DNSMASQ, free_port, probe
from vsmtpdlib import Vsmtpd


class Dns:
    """dnsmasq answering the test domains from its command line only."""

    def __init__(self):
        self.port = free_port()
        self.logfile = os.path.join(tmpdir(), "dnsmasq.log")
        cmd = [DNSMASQ, "-k", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=",
               f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
               "--log-queries", f"--log-facility={self.logfile}", "--cache-size=0",
               "--mx-host=ok.test,mx.ok.test,10",
               "--host-record=mx.ok.test,127.0.0.1",
               # a second, dead MX host first: the client must go on to the next
               "--mx-host=two.test,mx0.two.test,5",
               "--mx-host=two.test,mx.ok.test,10",
               "--host-record=mx0.two.test,127.0.0.2",
               # no MX: the A record is the implicit MX (RFC 5321 §5.1)
               "--host-record=nomx.test,127.0.0.1",
               "--dns-rr=nullmx.test,15,000000",
               "--local=/test/"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        self.proc = spawn(cmd, bufsize=0)
        wait_log_lines(lambda: read_text(self.logfile), r"started, version", what="dnsmasq")
        deadline = time.time() + 10
        while probe(self.address(), 1000, "a", "mx.ok.test")[0]["outcome"] != "ok":
            assert self.proc.poll() is None, read_text(self.logfile)
            assert time.time() < deadline, "dnsmasq does not answer"
            time.sleep(0.1)

    def address(self):
        return f"127.0.0.1:{self.port}"


_dns = None


def dns():
    global _dns
    if _dns is None:
        _dns = Dns()
    return _dns


def sink(**kw):
    return P.SmtpSink(tmpdir(), **kw).start()


def accepting_sink(s):
    """Stop sink s and start one that accepts everything on its port."""
    port = s.port
    s.stop()
    return P.SmtpSink(tmpdir(), port=port).start()


def message(subject, body=""):
    return (f"From: Alice <alice@local.test>\r\nTo: Bob <bob@ok.test>\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@local.test>\r\n"
            f"\r\nHello from {subject}.\r\n{body}")


def vsmtpd(s, extra_rules="", env=None, delivery=None, **queue):
    d = tmpdir()
    rules = ("delivery {\n"
             f'  rule "local" when rcpt.domain == "local.test" => deliver maildir "{d}/mail/%d/%l"\n'
             f"{extra_rules}"
             "}\n")
    q = {"run_interval": "500ms", "retry_min": "2s", "retry_max": "4s"}
    q.update(queue)
    v = Vsmtpd(rules=rules, dir=d, settings={
        "queue": q,
        "delivery": {"default": "mx", "smtp_port": str(s.port), **(delivery or {})},
        "dns": {"nameserver": dns().address(), "timeout": "2s"},
    })
    # extra environment (LD_PRELOAD) for the spawn only: the harness passes
    # its own environment on
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return v.start()
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def wait_until(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def send(v, rcpts, subject, sender="alice@local.test", body=""):
    r, qid = v.send_mail(sender, rcpts, message(subject, body))
    assert r.code == 250 and qid, r
    return qid


def bounce_for(v, subject, timeout=20):
    """The DSN delivered to alice@local.test about `subject`, parsed."""
    def find():
        for raw in v.maildir_messages("alice@local.test"):
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            if subject in raw.decode("utf-8", "replace"):
                return msg
        return None
    return wait_until(find, timeout, f"a bounce about {subject!r}")


def status_groups(dsn):
    """The per-recipient field groups of the message/delivery-status part."""
    assert dsn.get_content_type() == "multipart/report", dsn.get_content_type()
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status", parts[1].get_content_type()
    groups = parts[1].get_payload()  # [per-message, per-recipient...]
    out = [dict((k.lower(), str(val)) for k, val in g.items()) for g in groups[1:]]
    for g in out:  # "rfc822;a@b" and "rfc822; a@b" are the same
        g["final-recipient"] = re.sub(r";\s*", "; ", g["final-recipient"]).lower()
    return out


# ---- tests -------------------------------------------------------------------------


def test_mx_and_relay_delivered():
    s = sink()
    v = vsmtpd(s, f'  rule "relay" when rcpt.domain == "relay.test" => '
                  f'deliver relay "[127.0.0.1]:{s.port}"\n')
    try:
        send(v, ["bob@ok.test", "carol@ok.test"], "via mx")
        send(v, ["dan@relay.test"], "via relay")
        send(v, ["erin@nomx.test"], "implicit mx")
        send(v, ["fred@two.test"], "second mx")
        msgs = s.wait_messages(4, timeout=30)
        rcpts = sorted(a for m in msgs for a in m.rcpt_args)
        assert rcpts == ["<bob@ok.test>", "<carol@ok.test>", "<dan@relay.test>",
                         "<erin@nomx.test>", "<fred@two.test>"], rcpts
        # one transaction for both ok.test recipients (grouped by domain)
        assert sorted(len(m.rcpt_args) for m in msgs) == [1, 1, 1, 2], [m.rcpt_args for m in msgs]
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        log = v.log()
        assert re.search(r"to=<bob@ok\.test> delivered relay=mx\.ok\.test\[127\.0\.0\.1\]", log), log
        assert re.search(r"to=<fred@two\.test> delivered relay=mx\.ok\.test", log), log
        assert v.stop() == 0, v.log()[-3000:]  # a clean exit (sanitizer builds: no leak)
    finally:
        v.stop()
        s.stop()


def test_4xx_deferred_retried_then_delivered():
    s = sink(soft_reject=["RCPT"])
    v = vsmtpd(s)
    try:
        qid = send(v, ["bob@ok.test"], "soft")
        v.wait_log(rf"id={qid} delivery: .*to=<bob@ok\.test> deferred: host mx\.ok\.test\[127\.0\.0\.1\] "
                   r"said: 450", timeout=15, count=2)
        # the envelope is written after the attempt's log lines
        env = wait_until(lambda: (e := v.envelope(qid))["attempts"] >= 2 and e, timeout=10,
                         what="the envelope of the second attempt")
        assert env["recipients"][0]["state"] == "deferred", env
        assert "said: 450 4.3.0" in env["recipients"][0]["result"], env
        # backoff: 2 s, then 4 s (retry_max), never the 500 ms scan: the
        # next attempt is at least retry_min away
        assert env["next_attempt"], env
        assert env["attempts"] <= 3, env
        s = accepting_sink(s)
        msgs = s.wait_messages(1, timeout=20)
        assert msgs[0].rcpt_args == ["<bob@ok.test>"], msgs[0].rcpt_args
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
    finally:
        v.stop()
        s.stop()


def test_5xx_bounced_to_sender():
    s = sink(hard_reject=["RCPT"], hard_reply="550 5.1.1 no such user")
    v = vsmtpd(s)
    try:
        qid = send(v, ["bob@ok.test"], "hard failure")
        dsn = bounce_for(v, "hard failure")
        assert dsn["From"] is not None and "MAILER-DAEMON" in str(dsn["From"]).upper(), dsn["From"]
        groups = status_groups(dsn)
        assert len(groups) == 1, groups
        g = groups[0]
        assert g["final-recipient"] == "rfc822; bob@ok.test", g
        assert g["action"] == "failed" and g["status"] == "5.1.1", g
        assert "550 5.1.1 no such user" in g["diagnostic-code"], g
        assert g["diagnostic-code"].startswith("smtp;"), g
        assert "mx.ok.test" in g.get("remote-mta", ""), g
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        assert s.messages() == []
        v.wait_log(rf"id={qid} delivery: .*sender non-delivery notification: [0-9A-F]{{16}}")
        # the bounce itself came from <> and was delivered locally
        raw = v.maildir_messages("alice@local.test")[0]
        assert b"Return-Path: <>" in raw, raw[:400]
        assert v.stop() == 0, v.log()[-3000:]
    finally:
        v.stop()
        s.stop()


def test_null_mx_and_nxdomain_bounce():
    s = sink()
    v = vsmtpd(s)
    try:
        send(v, ["bob@nullmx.test", "carol@nx.test"], "no such place")
        groups = status_groups(bounce_for(v, "no such place"))
        by = {g["final-recipient"]: g for g in groups}
        assert by["rfc822; bob@nullmx.test"]["status"] == "5.1.10", by
        assert by["rfc822; carol@nx.test"]["status"] == "5.1.2", by
        assert all(g["action"] == "failed" for g in groups), groups
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        assert s.messages() == []
    finally:
        v.stop()
        s.stop()


def test_no_bounce_to_null_sender():
    s = sink()
    v = vsmtpd(s)
    try:
        qid = send(v, ["bob@nullmx.test"], "from nobody", sender="")
        v.wait_log(rf"id={qid} delivery: .*to=<bob@nullmx\.test> failed: 556 5\.1\.10")
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        time.sleep(1)
        assert "non-delivery notification" not in v.log(), v.log()[-2000:]
        assert v.queue_ids() == []
    finally:
        v.stop()
        s.stop()


def test_lifetime_expired_bounce():
    s = sink(soft_reject=["RCPT"])
    v = vsmtpd(s, lifetime="3s", retry_min="1s", retry_max="1s")
    try:
        qid = send(v, ["bob@ok.test"], "too late")
        groups = status_groups(bounce_for(v, "too late"))
        assert len(groups) == 1 and groups[0]["action"] == "failed", groups
        assert groups[0]["status"] == "4.4.7", groups
        assert "message expired" in groups[0]["diagnostic-code"], groups
        assert "450 4.3.0" in groups[0]["diagnostic-code"], groups  # the last result
        v.wait_log(rf"id={qid} delivery: to=<bob@ok\.test> failed: message expired")
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        assert s.messages() == []
    finally:
        v.stop()
        s.stop()


def test_unbounceable_goes_to_dead():
    # the queue's tmp/ files may not grow past 4000 bytes (tests/mta/
    # enospc-shim.c): the 3 kB message and its envelope fit, the DSN (the
    # original and a report) does not, so it cannot be queued
    shim = os.environ.get("VPS_ENOSPC_SHIM", "")
    assert shim and os.path.exists(shim), f"the ENOSPC shim is not built: {shim!r}"
    s = sink(hard_reject=["RCPT"], hard_reply="550 5.1.1 no such user")
    # an ASan build of vsmtpd wants its runtime first in the preload list
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    v = vsmtpd(s, env={"LD_PRELOAD": shim, "VPS_SHIM_ENOSPC_AFTER": "4000",
                       "ASAN_OPTIONS": asan})
    try:
        qid = send(v, ["bob@ok.test"], "undeliverable", body=("y" * 70 + "\r\n") * 40)
        v.wait_log(rf"id={qid} delivery: no bounce to <alice@local\.test>: .*moving to dead/")
        wait_until(lambda: qid in v.queue_ids("dead") or None, what="in dead/")
        assert v.queue_ids() == [], v.queue_ids()
        env = v.envelope(qid, area="dead")
        assert env["recipients"][0]["state"] == "failed", env
        assert "550 5.1.1" in env["recipients"][0]["result"], env
        assert "enospc-shim: " in v.log(), "the fault was never injected"
        assert v.maildir_messages("alice@local.test") == []
    finally:
        v.stop()
        s.stop()


def test_kill9_during_delivery():
    # the sink waits 4 s before it answers DATA: vsmtpd dies in between
    s = sink(extra_args=["-w", "4"])
    v = vsmtpd(s)
    try:
        qid = send(v, ["bob@ok.test"], "killed")
        # smtp-sink makes its dump file at RCPT
        wait_until(lambda: os.listdir(s.dump_dir) or None, 15, "the sink's transaction")
        time.sleep(0.5)
        assert s.messages() == [], "the DATA reply came before the kill"
        v.kill9()
        assert qid in v.queue_ids(), v.queue_ids()
        v.start()
        msgs = s.wait_messages(1, timeout=30)
        wait_until(lambda: v.queue_ids() == [], 30, "queue empty after restart")
        n = len([m for m in s.messages() if m.rcpt_args == ["<bob@ok.test>"]])
        assert 1 <= n <= 2, (n, msgs)
    finally:
        v.stop()
        s.stop()


def test_flush_wakes_running_vsmtpd():
    # retry_min 1 h and a 1 h scan: only `vpsctl queue flush` (next_attempt
    # 0, then SIGUSR1 to the pid in the spool's lock) can bring it out now
    s = sink(soft_reject=["RCPT"])
    v = vsmtpd(s, run_interval="1h", retry_min="1h", retry_max="2h")
    try:
        with open(os.path.join(v.queue_dir, "lock")) as f:
            assert f.read() == f"{v.pid}\n"  # written by the spool's owner
        qid = send(v, ["bob@ok.test"], "flushed")
        v.wait_log(rf"id={qid} delivery: .*to=<bob@ok\.test> deferred: .* said: 450", timeout=15)
        env = wait_until(lambda: (e := v.envelope(qid))["attempts"] == 1 and e, what="recorded")
        assert env["next_attempt"] and env["recipients"][0]["state"] == "deferred", env
        port = s.port
        s.stop()
        s = P.SmtpSink(tmpdir(), port=port).start()
        time.sleep(1.5)
        assert s.messages() == [] and v.queue_ids() == [qid], "delivered before the flush"
        rc, out, err = v.ctl("queue", "flush")
        assert f"vsmtpd (pid {v.pid}) asked to scan the queue" in out, (out, err)
        msgs = s.wait_messages(1, timeout=10)
        assert msgs[0].rcpt_args == ["<bob@ok.test>"], msgs[0].rcpt_args
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        assert "SIGUSR1: scanning the queue" in v.log()
        # retry of one id wakes it too; SIGUSR1 with nothing due is harmless
        rc, out, err = v.ctl("queue", "retry", qid, ok=False)
        assert rc == 1 and "not in the queue" in err, (rc, out, err)
        assert v.alive()
        v.stop()
        # no vsmtpd: said so, exit 0
        rc, out, err = v.ctl("queue", "flush")
        assert "vsmtpd is not running" in out, (out, err)
    finally:
        v.stop()
        s.stop()


def cleanup():
    if _dns is not None and _dns.proc.poll() is None:
        _dns.proc.terminate()


if __name__ == "__main__":
    try:
        run([test_mx_and_relay_delivered, test_4xx_deferred_retried_then_delivered,
             test_5xx_bounced_to_sender, test_null_mx_and_nxdomain_bounce,
             test_no_bounce_to_null_sender, test_lifetime_expired_bounce,
             test_unbounceable_goes_to_dead, test_kill9_during_delivery,
             test_flush_wakes_running_vsmtpd])
    finally:
        cleanup()
