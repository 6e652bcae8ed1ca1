#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd as the policy service (check_policy_service) of a real Postfix 3.7
(sandboxed by postfixlib): swaks sends, smtp-sink receives, and each test
checks the SMTP replies exactly as Postfix rewrites them, PREPENDed headers
at the sink (above Postfix's Received), HOLD in the hold queue, DISCARD,
BCC, and that rules of every stage run once per SMTP event.

Two Postfix instances share one vpsd:
  - "doc": the main.cf lines of docs/postfix.md "As a policy service" (read
    from the document; only the port differs), Postfix's default
    smtpd_delay_reject = yes: every check happens at RCPT, the same request
    comes once per restriction list, and the connect/helo/mail rules catch
    up there;
  - "all": check_policy_service in smtpd_client_, _helo_, _sender_,
    _recipient_, _data_ and _end_of_data_restrictions with
    smtpd_delay_reject = no: one request per stage, each stage's reply at
    its own SMTP command.
Then vpsd stopped: smtpd_policy_service_default_action of the document."""
import os, re, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from postfixlib import (Postfix, SmtpSink, free_port, swaks, reply_to, mail_reply, rcpt_reply,
                        eod_reply, ehlo_reply, data_reply, wait_listening, replies)

VPSD = os.environ["VPSD"]
SRC = os.environ["VPS_SRCDIR"]
DOC = os.path.join(SRC, "docs", "postfix.md")
DOC_ADDR = "inet:127.0.0.1:10031"  # what docs/postfix.md writes

RULES = r'''
helo {
  rule "bad helo" when helo.name == "bad.helo" => reject 550 5.7.1 "Bad HELO"
}
mail {
  rule "bad sender" when mail.from == "bad@example.com" => reject 550 5.7.1 "Bad sender"
  rule "count mail" when mail.from == "once@example.com" => set mailseen = "yes"
}
rcpt {
  rule "no such user" when rcpt.to == "nobody@example.org" => reject 550 5.1.1 "No such user"
  rule "later" when rcpt.to == "later@example.org" => tempfail 451 4.7.1 "Try later"
  rule "drop" when rcpt.to == "drop@example.org" => discard
  rule "hold" when rcpt.to == "hold@example.org" => quarantine "spam"
  rule "second" when rcpt.count == 1 and rcpt.to == "second@example.org"
    => reject 550 5.7.1 "second recipient"
  rule "stamp" when rcpt.to == "stamp@example.org" => add_header "X-Policy-Stamp" "one",
    add_header "X-Policy-Two" "two"
  rule "bcc" when rcpt.to == "bcc@example.org" => add_rcpt "archive@example.net"
  rule "var" when var.mailseen == "yes" and rcpt.to == "var@example.org"
    => add_header "X-Mail-Seen" "yes"
}
data {
  rule "big" when message.size > 3000 => reject 552 5.3.4 "Message too big"
  rule "hold late" when message.size > 2000 => quarantine "spam"
}
'''


def doc_main_cf():
    """The ```ini block of the "As a policy service" section of
    docs/postfix.md as {name: value}."""
    text = open(DOC, encoding="utf-8").read()
    sec = text.split("\n## As a policy service", 1)
    assert len(sec) == 2, "docs/postfix.md has no '## As a policy service' section"
    body = sec[1].split("\n## ", 1)[0]
    m = re.search(r"```ini\n(.*?)```", body, re.S)
    assert m, "the policy section has no ```ini block"
    params = {}
    for line in m.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not a main.cf line: {line!r}"
        params[name.strip()] = value.strip()
    assert any("check_policy_service" in v for v in params.values()), params
    return params


class Env:
    def __init__(self):
        self.dir = tmpdir()
        self.vport = free_port()
        self.addr = f"inet:127.0.0.1:{self.vport}"
        with open(os.path.join(self.dir, "rules.vsl"), "w") as f:
            f.write(RULES)
        self.conf = os.path.join(self.dir, "vps.conf")
        with open(self.conf, "w") as f:
            f.write(f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 1s
[policy]
listen = {self.addr}
[quarantine]
dir = q
names = spam
[log]
level = info
""")
        self.log_path = os.path.join(self.dir, "vpsd.log")
        self.start_vpsd()
        os.makedirs(os.path.join(self.dir, "sink"))
        self.sink = SmtpSink(os.path.join(self.dir, "sink")).start()
        # the document's lines; mail from 127.0.0.1 must not be "mynetworks"
        # (permit_mynetworks would skip the policy) and example.org is
        # relayed (reject_unauth_destination lets it pass)
        self.doc_params = doc_main_cf()
        doc = {k: v.replace(DOC_ADDR, self.addr) for k, v in self.doc_params.items()}
        doc.update({"mynetworks": "127.0.0.2/32", "relay_domains": "example.org, example.net"})
        self.doc = Postfix(os.path.join(self.dir, "pf-doc"), relay_port=self.sink.port,
                           main_cf_extra=doc).start()
        check = f"check_policy_service {self.addr}"
        every = {f"smtpd_{k}_restrictions": check
                 for k in ("client", "helo", "sender", "data", "end_of_data")}
        every["smtpd_recipient_restrictions"] = f"{check}, permit_mynetworks, reject"
        every["smtpd_delay_reject"] = "no"
        self.all = Postfix(os.path.join(self.dir, "pf-all"), relay_port=self.sink.port,
                           main_cf_extra=every).start()

    def start_vpsd(self):
        self.proc = subprocess.Popen([VPSD, "-c", self.conf], stdout=open(self.log_path, "a"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        taplib._procs.append(self.proc)
        wait_listening(self.vport)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def sink_message(self, header, value, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.sink.messages():
                if m.header(header) == value:
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no message with {header}: {value} at the sink")


E = None


def env():
    global E
    if E is None:
        E = Env()
    return E


def tag():
    return f"t{time.time_ns()}"


def test_doc_lines_are_what_postfix_runs():
    e = env()
    for k, v in e.doc_params.items():
        got = e.doc.postconf(k)
        want = v.replace(DOC_ADDR, e.addr)
        assert re.sub(r"\s+", " ", got) == re.sub(r"\s+", " ", want), (k, got, want)


def test_rcpt_reject_and_tempfail_rewritten_by_postfix():
    e = env()
    for pf in (e.doc, e.all):
        rc, t = swaks(pf.port, to="nobody@example.org")
        assert rcpt_reply(t) == (550, "550 5.1.1 <nobody@example.org>: Recipient address "
                                      "rejected: No such user"), (pf.port, rcpt_reply(t), t)
        rc, t = swaks(pf.port, to="later@example.org")
        assert rcpt_reply(t) == (451, "451 4.7.1 <later@example.org>: Recipient address "
                                      "rejected: Try later"), rcpt_reply(t)


def test_helo_and_sender_rejects():
    e = env()
    # delay_reject = no: each at its own command, in Postfix's words
    rc, t = swaks(e.all.port, ehlo="bad.helo")
    assert ehlo_reply(t) == (550, "550 5.7.1 <bad.helo>: Helo command rejected: Bad HELO"), t
    rc, t = swaks(e.all.port, from_="bad@example.com")
    assert mail_reply(t) == (550, "550 5.7.1 <bad@example.com>: Sender address rejected: "
                                  "Bad sender"), mail_reply(t)
    # delay_reject = yes: they catch up at RCPT, where Postfix asks
    rc, t = swaks(e.doc.port, ehlo="bad.helo")
    assert ehlo_reply(t)[0] == 250
    assert rcpt_reply(t) == (550, "550 5.7.1 <rcpt@example.org>: Recipient address rejected: "
                                  "Bad HELO"), rcpt_reply(t)
    rc, t = swaks(e.doc.port, from_="bad@example.com")
    assert mail_reply(t)[0] == 250
    assert rcpt_reply(t) == (550, "550 5.7.1 <rcpt@example.org>: Recipient address rejected: "
                                  "Bad sender"), rcpt_reply(t)


def test_prepend_above_received_and_rules_once_per_rcpt():
    e = env()
    for pf in (e.doc, e.all):
        t0 = tag()
        rc, t = swaks(pf.port, to="stamp@example.org,second@example.org",
                      header=f"Subject: {t0}")
        # second@ is the second recipient: rcpt.count == 1 although the doc
        # instance asks about each recipient once per restriction list
        rs = replies(t, "RCPT TO")
        assert rs[0][0] == 250 and rs[1] == (
            550, "550 5.7.1 <second@example.org>: Recipient address rejected: second recipient"), rs
        assert eod_reply(t)[0] == 250, t
        m = e.sink_message("Subject", t0)
        assert m.header("X-Policy-Stamp") == "one", m.headers
        lines = m.headers.splitlines()
        first = next(i for i, l in enumerate(lines) if l.startswith("X-Policy-Stamp:"))
        received = next(i for i, l in enumerate(lines) if l.startswith("Received:"))
        assert first < received, m.headers
        # the second header rides on a later reply: the DATA request
        # (smtpd_data_restrictions in both)
        assert m.header("X-Policy-Two") == "two", (pf.port, m.headers)


def test_mail_stage_state_reaches_rcpt():
    e = env()
    for pf in (e.doc, e.all):
        t0 = tag()
        rc, t = swaks(pf.port, from_="once@example.com", to="var@example.org",
                      header=f"Subject: {t0}")
        assert eod_reply(t)[0] == 250, t
        m = e.sink_message("Subject", t0)
        assert m.header("X-Mail-Seen") == "yes", m.headers
        # and the next transaction of another sender does not see it
        t1 = tag()
        rc, t = swaks(pf.port, from_="other@example.com", to="var@example.org",
                      header=f"Subject: {t1}")
        m = e.sink_message("Subject", t1)
        assert m.header("X-Mail-Seen") is None, m.headers


def test_bcc():
    e = env()
    t0 = tag()
    rc, t = swaks(e.doc.port, to="bcc@example.org", header=f"Subject: {t0}")
    assert eod_reply(t)[0] == 250, t
    deadline = time.time() + 20
    while time.time() < deadline:
        rcpts = sorted(r for m in e.sink.messages() if m.header("Subject") == t0 for r in m.rcpts)
        if rcpts == ["archive@example.net", "bcc@example.org"]:
            break
        time.sleep(0.05)
    assert rcpts == ["archive@example.net", "bcc@example.org"], rcpts


def test_hold_puts_message_in_hold_queue():
    e = env()
    for pf in (e.doc, e.all):
        before = set(pf.hold_queue())
        rc, t = swaks(pf.port, to="hold@example.org")
        assert rcpt_reply(t)[0] == 250 and eod_reply(t)[0] == 250, t
        qid = re.search(r"queued as (\w+)", eod_reply(t)[1]).group(1)
        deadline = time.time() + 10
        while qid not in pf.hold_queue() and time.time() < deadline:
            time.sleep(0.05)
        assert qid in set(pf.hold_queue()) - before, (qid, pf.hold_queue())
        # the first RCPT comes before Postfix has a queue id
        pf.wait_log(r"NOQUEUE: hold: RCPT from .*<hold@example.org>: Recipient address "
                    r"quarantine spam")


def test_discard():
    e = env()
    t0 = tag()
    rc, t = swaks(e.doc.port, to="drop@example.org", header=f"Subject: {t0}")
    assert rcpt_reply(t)[0] == 250 and eod_reply(t)[0] == 250, t
    e.doc.wait_log(r"discard: RCPT from .*drop")
    time.sleep(1)
    assert not [m for m in e.sink.messages() if m.header("Subject") == t0]


def test_end_of_data_reject_and_hold():
    e = env()
    big = "x" * 70 + "\n"
    rc, t = swaks(e.all.port, to="a@example.org", body=big * 50)
    assert eod_reply(t) == (552, "552 5.3.4 <END-OF-MESSAGE>: End-of-data rejected: "
                                 "Message too big"), eod_reply(t)
    rc, t = swaks(e.all.port, to="a@example.org", body=big * 35)
    assert eod_reply(t)[0] == 250, t
    qid = re.search(r"queued as (\w+)", eod_reply(t)[1]).group(1)
    deadline = time.time() + 10
    while qid not in e.all.hold_queue() and time.time() < deadline:
        time.sleep(0.05)
    assert qid in e.all.hold_queue(), e.all.hold_queue()


def test_vpsd_down_default_action():
    e = env()
    want = e.doc_params["smtpd_policy_service_default_action"]
    e.proc.send_signal(signal.SIGTERM)
    e.proc.wait(timeout=10)
    try:
        rc, t = swaks(e.doc.port, to="a@example.org")
        code, text = rcpt_reply(t)
        assert text.startswith(want.split()[0] + " " + want.split()[1]), (text, want)
        assert "Server configuration problem" in text, text
    finally:
        e.start_vpsd()
    time.sleep(0.5)
    rc, t = swaks(e.doc.port, to="nobody@example.org")
    assert rcpt_reply(t)[0] == 550, t


if __name__ == "__main__":
    run([test_doc_lines_are_what_postfix_runs,
         test_rcpt_reject_and_tempfail_rewritten_by_postfix, test_helo_and_sender_rejects,
         test_prepend_above_received_and_rules_once_per_rcpt, test_mail_stage_state_reaches_rcpt,
         test_bcc, test_hold_puts_message_in_hold_queue, test_discard,
         test_end_of_data_reject_and_hold, test_vpsd_down_default_action])
