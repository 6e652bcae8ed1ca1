#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Greylisting by vpsd behind a real Postfix 3.7, side by side with postgrey
1.37, the program it replaces, behind a second Postfix (both sandboxed by
postfixlib; smtp-sink is the final destination).

  swaks -> Postfix "vps"  -- check_policy_service --> vpsd (rcpt: greylist)
  swaks -> Postfix "pg"   -- check_policy_service --> postgrey --delay=3
  swaks -> Postfix "sender" --relay--> Postfix "vps"

Checks: the first attempt of a triplet is deferred at RCPT by both with the
same code and enhanced code (450 4.2.0); a retry before the delay is
deferred again by both; after the delay both accept and the message reaches
the sink; a real MTA (the sender Postfix) is deferred at its first delivery
attempt and its own retry after the delay is accepted and delivered."""
import os, re, shutil, socket, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from postfixlib import Postfix, SmtpSink, free_port, swaks, rcpt_reply, eod_reply

import vpsdlib
DELAY = 3

RULES = r'''
rcpt {
  rule "greylisting" when not client.authenticated => greylist
}
'''


class Env:
    def __init__(self):
        self.dir = tmpdir()
        os.chmod(self.dir, 0o755)  # postgrey drops to its own user
        self.vport = free_port()
        self.vpsd = vpsdlib.Vpsd(f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 1s
[policy]
listen = inet:127.0.0.1:{self.vport}
[greylist]
delay = {DELAY}s
retry_window = 1h
auto_whitelist = 0
[quarantine]
dir = q
[log]
level = info
""", RULES).start(wait_port=self.vport)

        self.pgport = free_port()
        db = os.path.join(self.dir, "pgdb")
        os.mkdir(db)
        shutil.chown(db, "postgrey", "postgrey")
        pg = taplib.spawn(["postgrey", f"--inet=127.0.0.1:{self.pgport}", f"--dbdir={db}",
                           f"--delay={DELAY}", "--max-age=35", "--retry-window=2",
                           "--hostname=test.example", f"--pidfile={self.dir}/pg.pid",
                           "--auto-whitelist-clients=0", "--whitelist-clients=/dev/null",
                           "--whitelist-recipients=/dev/null"])
        taplib.wait_for_line(pg, "Binding to TCP port", timeout=20)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.pgport), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "postgrey does not listen"
                time.sleep(0.1)

        os.makedirs(os.path.join(self.dir, "sink"))
        self.sink = SmtpSink(os.path.join(self.dir, "sink")).start()

        def receiver(name, policy):
            # postgrey answers DEFER_IF_PERMIT: the list must end in permit for
            # it to defer (relaying is refused by smtpd_relay_restrictions)
            extra = {"smtpd_recipient_restrictions": f"check_policy_service {policy}, permit",
                     "mynetworks": "127.0.0.2/32", "relay_domains": "example.org"}
            return Postfix(os.path.join(self.dir, name), relay_port=self.sink.port,
                           main_cf_extra=extra).start()

        self.vps = receiver("pf-vps", f"inet:127.0.0.1:{self.vport}")
        self.pg = receiver("pf-pg", f"inet:127.0.0.1:{self.pgport}")
        # a sending MTA relaying everything to the vps receiver; it retries
        # deferred mail every 2 s (postfixlib's backoff for tests)
        self.sender = Postfix(os.path.join(self.dir, "pf-sender"), relay_port=self.vps.port,
                              main_cf_extra={"smtp_host_lookup": "native"}).start()

    def sink_message(self, header, value, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.sink.messages():
                if m.header(header) == value:
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no message with {header}: {value} at the sink")

    def log(self):
        return self.vpsd.log()


E = None


def env():
    global E
    if E is None:
        E = Env()
    return E


def code_and_enhanced(reply):
    code, text = reply
    m = re.match(r"(\d{3}) (\d\.\d{1,3}\.\d{1,3}) ", text)
    assert m, text
    return code, m.group(2)


def test_first_attempt_deferred_then_accepted_like_postgrey():
    e = env()
    tag = f"t{time.time_ns()}"
    kw = dict(from_="alice@example.com", to="bob@example.org", h_X_Tag=tag)
    first = {}
    for name, pf in (("vps", e.vps), ("postgrey", e.pg)):
        rc, t = swaks(pf.port, **kw)
        first[name] = rcpt_reply(t)
        assert first[name][0] == 450, (name, t)
        assert "Greylisted" in first[name][1], (name, first[name])
    # the same answer as postgrey's, in Postfix's words
    assert code_and_enhanced(first["vps"]) == code_and_enhanced(first["postgrey"]) == \
        (450, "4.2.0"), first
    assert first["vps"][1] == ("450 4.2.0 <bob@example.org>: Recipient address rejected: "
                               "Greylisted, please try again later"), first["vps"]
    # retried too early: deferred again by both
    for name, pf in (("vps", e.vps), ("postgrey", e.pg)):
        rc, t = swaks(pf.port, **kw)
        assert rcpt_reply(t)[0] == 450, (name, t)
    time.sleep(DELAY + 0.5)
    # after the delay: both accept, and the message is delivered
    for name, pf in (("vps", e.vps), ("postgrey", e.pg)):
        rc, t = swaks(pf.port, **kw)
        assert rcpt_reply(t)[0] == 250, (name, t)
        assert eod_reply(t)[0] == 250, (name, t)
    deadline = time.time() + 30
    while len([m for m in e.sink.messages() if m.header("X-Tag") == tag]) < 2:
        assert time.time() < deadline, "both messages should reach the sink"
        time.sleep(0.05)
    # vpsd logged the deferral of that triplet with its rule
    assert re.search(r'stage=rcpt verdict=tempfail rule="greylisting" code=450 4\.2\.0', e.log())


def test_real_mta_retry_is_accepted_after_the_delay():
    e = env()
    tag = f"r{time.time_ns()}"
    t0 = time.time()
    rc, t = swaks(e.sender.port, from_="carol@example.com", to="dave@example.org", h_X_Tag=tag)
    assert eod_reply(t)[0] == 250, t          # queued by the sending MTA
    m = e.sink_message("X-Tag", tag, timeout=60)
    elapsed = time.time() - t0
    assert elapsed >= DELAY - 0.5, elapsed       # not before the delay
    assert m is not None
    log = open(e.sender.maillog, encoding="utf-8", errors="replace").read()
    # its first attempt was deferred with the greylisting reply, a later one sent
    assert re.search(r"to=<dave@example\.org>.*status=deferred.*450 4\.2\.0", log), log[-3000:]
    assert re.search(r"to=<dave@example\.org>.*status=sent", log), log[-3000:]


if __name__ == "__main__":
    run([test_first_attempt_deferred_then_accepted_like_postgrey,
         test_real_mta_retry_is_accepted_after_the_delay])
