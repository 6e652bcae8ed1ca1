#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Sendmail harness itself (sendmaillib): a sandboxed Sendmail 8.17
relays swaks mail to smtp-sink, calls the trivial libmilter milter, answers
451 at MAIL (F=T) or 554 at the greeting (F=R) when the milter is down,
quarantines on a (pymilter) milter's request, lists and releases its
quarantine.  Real peers only.  When the Sendmail packages cannot be fetched
or unpacked here the whole plan is a TAP SKIP with the reason."""
import os, sys, uuid

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, spawn, tmpdir, wait_for_line
from postfixlib import (SmtpSink, free_port, swaks, banner_reply, ehlo_reply, mail_reply, rcpt_reply,
                        reply_to, eod_reply, wait_listening, is_listening)
from sendmaillib import Sendmail, SendmailUnavailable, ensure_dist

BUILD = os.environ.get("VPS_BUILDDIR", "build")
MILTER = os.environ.get("TRIVIAL_MILTER",
                        os.path.join(BUILD, "tests", "milters", "trivial-milter"))
MILTER_TIMEOUTS = "T=C:10s;S:10s;R:10s;E:30s"


def sandbox(milters=(), sink=True):
    """A sink (unless sink=False: the smart host then is a closed port) and
    a Sendmail relaying to it, both started."""
    d = tmpdir()
    s = None
    if sink:
        os.makedirs(os.path.join(d, "sink"))
        s = SmtpSink(os.path.join(d, "sink")).start()
        relay_port = s.port
    else:
        relay_port = free_port()
    sm = Sendmail(os.path.join(d, "sm"), smart_host=("127.0.0.1", relay_port),
                  milters=milters).start()
    return s, sm


def start_milter(*flags):
    port = free_port()
    p = spawn([MILTER, "-v", *flags, "-p", f"inet:{port}@127.0.0.1"], bufsize=0)
    wait_for_line(p, "listening on")
    wait_listening(port)
    return p, port


def stop(*things):
    for t in things:
        if t is None:
            continue
        if hasattr(t, "stop"):
            t.stop()
        else:
            t.kill()  # libmilter takes 5-15 s to honour SIGTERM; it holds no state
            t.wait()


def send_one(sm, **kw):
    token = uuid.uuid4().hex
    rc, t = swaks(sm.port, from_="alice@example.com", to="bob@example.org",
                  h_Subject=f"t {token}", body=f"body line {token}", **kw)
    return rc, t, token


def queue_id(transcript):
    """The id in Sendmail's "250 2.0.0 ID Message accepted for delivery"."""
    code, text = eod_reply(transcript)
    assert code == 250 and "Message accepted for delivery" in text, transcript
    return text.split()[2]


def test_relay_to_sink():
    sink, sm = sandbox()
    try:
        rc, t, token = send_one(sm)
        assert rc == 0, t
        assert ehlo_reply(t)[0] == 250 and sm.hostname in ehlo_reply(t)[1], t
        qid = queue_id(t)
        m = sink.wait_messages(1)[0]
        assert m.mail_from == "alice@example.com", m.mail_args
        assert m.rcpts == ["bob@example.org"], m.rcpt_args
        assert f"body line {token}" in m.body, m.body
        assert m.header("Subject") == f"t {token}", m.headers
        assert f"with ESMTP id {qid}" in m.header("Received"), m.header("Received")
        sm.wait_log(rf"{qid}: to=<bob@example\.org>,.*mailer=relay, .*relay=\[127\.0\.0\.1\].*"
                    r"stat=Sent")
        sm.wait_queue_empty()
        assert "Total requests: 0" in sm.mailq() and sm.quarantined_ids() == []
        # Nothing waited on the host name (the 60 s sleep the shim avoids).
        assert "unqualified host name" not in sm.log(), sm.log()
    finally:
        stop(sm, sink)


def test_milter_sees_connection():
    milter, mport = start_milter()
    sink, sm = sandbox(milters=[("trivial", f"inet:{mport}@127.0.0.1", MILTER_TIMEOUTS, "F=T")])
    try:
        assert "INPUT_MAIL_FILTER(`trivial', `S=inet:" in open(sm.mc_path).read()
        rc, t, token = send_one(sm)
        assert rc == 0, t
        qid = queue_id(t)
        assert f"body line {token}" in sink.wait_messages(1)[0].body
        # The milter was offered Sendmail's full set and took every step.
        lines = wait_for_line(milter, "negotiate")
        assert "offered actions=0x1ff protocol=0x1fffff" in lines[-1], lines
        wait_for_line(milter, "eom")
        for step in ("header", "eoh", "body"):
            sm.wait_log(rf"{qid}: milter=trivial, action={step}, continue")
        sm.wait_log(rf"{qid}: Milter accept: message")
        sm.wait_log(rf"{qid}: to=<bob@example\.org>,.*stat=Sent")
        assert "error connecting to filter" not in sm.log(), sm.log()
    finally:
        stop(sm, sink, milter)


def test_milter_down_tempfails():
    mport = free_port()
    assert not is_listening(mport)
    sink, sm = sandbox(milters=[("gone", f"inet:{mport}@127.0.0.1", MILTER_TIMEOUTS, "F=T")])
    try:
        rc, t, _ = send_one(sm)
        assert rc != 0, t
        # Like Postfix, Sendmail answers EHLO and fails the session at MAIL.
        assert ehlo_reply(t)[0] == 250, t
        assert mail_reply(t) == (451, "451 4.3.2 Please try again later"), t
        assert rcpt_reply(t) is None and reply_to(t, "DATA") is None, t
        sm.wait_log(r"Milter \(gone\): error connecting to filter: Connection refused")
        sm.wait_log(r"Milter: initialization failed, temp failing commands")
        assert sink.messages() == [] and sm.queue_ids() == []
    finally:
        stop(sm, sink)


def test_milter_down_rejects_with_f_r():
    mport = free_port()
    sink, sm = sandbox(milters=[("gone", f"inet:{mport}@127.0.0.1", MILTER_TIMEOUTS, "F=R")])
    try:
        rc, t, _ = send_one(sm)
        assert rc != 0, t
        # Unlike F=T (451 at MAIL), F=R refuses the session at the greeting.
        assert banner_reply(t) == (554, f"554 {sm.hostname} ESMTP not accepting messages"), t
        assert ehlo_reply(t) is None and mail_reply(t) is None, t
        sm.wait_log(r"Milter: initialization failed, rejecting commands")
        assert sink.messages() == []
    finally:
        stop(sm, sink)


# A throwaway pymilter milter (python3-milter) that quarantines every
# message at end of message and prints the macros it was sent per stage.
QUARANTINE_MILTER = r"""
import sys, Milter
NAMES = ["j", "_", "{daemon_name}", "{if_name}", "{if_addr}", "i", "{mail_addr}",
         "{rcpt_addr}", "{msg_id}"]
class M(Milter.Base):
    def show(self, stage):
        got = sorted(n for n in NAMES if self.getsymval(n) is not None)
        print(stage, " ".join(got), flush=True)
    def connect(self, host, family, addr):
        self.show("connect"); return Milter.CONTINUE
    def envfrom(self, f, *args):
        self.show("envfrom"); return Milter.CONTINUE
    def eom(self):
        self.show("eom"); self.quarantine(sys.argv[2]); return Milter.ACCEPT
Milter.factory = M
Milter.set_flags(Milter.QUARANTINE)
print("listening", flush=True)
Milter.runmilter("quarantine", sys.argv[1], 60)
"""


def test_milter_quarantine_and_release():
    d = tmpdir()
    script = os.path.join(d, "quarantine_milter.py")
    with open(script, "w") as f:
        f.write(QUARANTINE_MILTER)
    mport = free_port()
    reason = f"held {uuid.uuid4().hex[:8]}"
    milter = spawn(["/usr/bin/python3", script, f"inet:{mport}@127.0.0.1", reason], bufsize=0)
    wait_for_line(milter, "listening")
    wait_listening(mport)
    sink, sm = sandbox(milters=[("quar", f"inet:{mport}@127.0.0.1", MILTER_TIMEOUTS, "F=T")])
    try:
        rc, t, token = send_one(sm)
        assert rc == 0, t
        qid = queue_id(t)  # a quarantine still answers 250
        sm.wait_log(rf"{qid}: to=<bob@example\.org>,.*quarantine={reason}, stat=quarantined")
        sm.wait_log(rf"{qid}: milter=quar, quarantine={reason}")
        # Macros Sendmail sends by default ({if_addr} is not set on loopback;
        # i exists from MAIL on).
        assert wait_for_line(milter, "connect")[-1] == "connect _ j {daemon_name} {if_name}"
        assert wait_for_line(milter, "envfrom")[-1].split()[1:] == \
            ["_", "i", "j", "{daemon_name}", "{if_name}", "{mail_addr}"]
        assert "{msg_id}" in wait_for_line(milter, "eom")[-1].split()
        assert sm.quarantined_ids() == [qid] and sm.queue_ids() == []
        assert sm.quarantine_reason(qid) == reason
        assert qid not in sm.mailq()
        assert f"QUARANTINE: {reason}" in sm.mailq(quarantined=True)
        assert sink.messages() == []
        # Released (empty reason), the next queue run delivers it.
        sm.quarantine(qid, "")
        assert sm.quarantined_ids() == [] and sm.queue_ids() == [qid]
        sm.run_queue()
        m = sink.wait_messages(1)[0]
        assert f"body line {token}" in m.body
        sm.wait_queue_empty()
    finally:
        stop(sm, sink, milter)


def test_quarantine_listing():
    # Smart host down: the message stays queued (deferred), then is put in
    # quarantine the way Sendmail does it for a milter's SMFIR_QUARANTINE.
    _, sm = sandbox(sink=False)
    try:
        rc, t, token = send_one(sm)
        assert rc == 0, t
        qid = queue_id(t)
        sm.wait_log(rf"{qid}: to=<bob@example\.org>,.*stat=Deferred: Connection refused")
        assert sm.queue_ids() == [qid], sm.queue_ids()
        assert qid in sm.mailq()
        sm.quarantine(qid, "held by test")
        sm.wait_log(rf"{qid}: quarantine=held by test")
        assert sm.queue_ids() == [] and sm.quarantined_ids() == [qid]
        assert sm.quarantine_reason(qid) == "held by test"
        assert qid not in sm.mailq()
        q = sm.mailq(quarantined=True)
        assert qid in q and "QUARANTINE: held by test" in q, q
        sm.quarantine(qid, "new reason")
        assert sm.quarantined_ids() == [qid] and sm.quarantine_reason(qid) == "new reason"
        assert os.path.exists(os.path.join(sm.queue_dir, "df" + qid))
    finally:
        stop(sm)


try:
    ensure_dist()
except SendmailUnavailable as e:
    print(f"1..0 # SKIP {e}", flush=True)
    sys.exit(0)

run([test_relay_to_sink, test_milter_sees_connection, test_milter_down_tempfails,
     test_milter_down_rejects_with_f_r, test_milter_quarantine_and_release, test_quarantine_listing])
