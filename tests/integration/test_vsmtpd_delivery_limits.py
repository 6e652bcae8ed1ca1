#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's outgoing connection limits, delay warnings and postq routes
(mta/delivery-remote.c, mta/delivery-notify.c, mta/delivery-postq.c).

  - a slow destination (a server that holds its greeting, then answers
    421) gets at most [delivery] destination_concurrency sessions, and a
    message for another destination is delivered meanwhile — with one
    delivery thread, so no thread waits for the slow one;
  - [delivery] max_connections bounds the sessions to all destinations;
  - [queue] delay_warning: one "delayed" DSN (RFC 3464, parsed with
    Python's email module) while smtp-sink keeps answering 4xx, never two;
  - `deliver relay` in postq routes the message, is kept in the envelope
    ("route") and used again at the retry without running postq again."""
import email, email.policy, os, re, socket, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import free_port, run, tmpdir
from test_vsmtpd_remote_delivery import (accepting_sink, cleanup, dns, send, sink,
                                         status_groups, vsmtpd, wait_until)
from vsmtpdlib import Vsmtpd


class SlowServer:
    """Holds every connection `hold` seconds before its greeting, then says
    421 and closes; counts sessions open at once."""

    def __init__(self, hold):
        self.hold = hold
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self.lock = threading.Lock()
        self.now = self.peak = self.total = 0
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.hold)
            c.sendall(b"421 4.7.0 slow.test busy, try later\r\n")
        except OSError:
            pass
        finally:
            with self.lock:
                self.now -= 1
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_slow_destination_does_not_delay_others():
    slow = SlowServer(hold=6)
    s = sink()
    v = vsmtpd(s, f'  rule "slow" when rcpt.domain == "slow.test" => '
                  f'deliver relay "[127.0.0.1]:{slow.port}"\n',
               delivery={"destination_concurrency": "2", "max_connections": "10"},
               delivery_threads="1", retry_min="60s", retry_max="60s")
    try:
        for i in range(5):
            send(v, [f"u{i}@slow.test"], f"slow {i}")
        wait_until(lambda: slow.total >= 2, timeout=10, what="sessions to the slow destination")
        t0 = time.time()
        send(v, ["bob@ok.test"], "fast one")
        msgs = s.wait_messages(1, timeout=10)
        took = time.time() - t0
        assert msgs[0].rcpt_args == ["<bob@ok.test>"], msgs[0].rcpt_args
        # the slow destination still holds its first sessions: 6 s each
        assert took < 5, f"the fast message waited {took:.1f}s behind the slow destination"
        # the slow destination's five messages are all tried, two at a time
        wait_until(lambda: len(re.findall(r"to=<u\d@slow\.test> deferred", v.log())) == 5,
                   timeout=40, what="five deferrals from the slow destination")
        assert slow.peak == 2, f"{slow.peak} sessions at once to one destination (limit 2)"
        assert slow.total == 5, slow.total
        assert re.search(r"to=<u0@slow\.test> deferred: .*421 4\.7\.0 slow\.test busy", v.log())
    finally:
        v.stop()
        s.stop()
        slow.stop()


def test_global_connection_limit():
    a, b = SlowServer(hold=3), SlowServer(hold=3)
    s = sink()
    v = vsmtpd(s, f'  rule "a" when rcpt.domain == "a.test" => deliver relay "[127.0.0.1]:{a.port}"\n'
                  f'  rule "b" when rcpt.domain == "b.test" => deliver relay "[127.0.0.1]:{b.port}"\n',
               delivery={"destination_concurrency": "2", "max_connections": "3"},
               retry_min="60s", retry_max="60s")
    try:
        peaks = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                with a.lock, b.lock:
                    peaks.append(a.now + b.now)
                time.sleep(0.02)
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        for i in range(3):
            send(v, [f"x{i}@a.test"], f"a {i}")
            send(v, [f"y{i}@b.test"], f"b {i}")
        wait_until(lambda: len(re.findall(r"to=<[xy]\d@[ab]\.test> deferred", v.log())) == 6,
                   timeout=40, what="six deferrals")
        stop.set()
        w.join(5)
        assert max(peaks) == 3, f"{max(peaks)} sessions at once in all (max_connections 3)"
        assert a.peak <= 2 and b.peak <= 2, (a.peak, b.peak)
        assert a.total == 3 and b.total == 3, (a.total, b.total)
    finally:
        v.stop()
        s.stop()
        a.stop()
        b.stop()


def delay_dsns(v, subject):
    out = []
    for raw in v.maildir_messages("alice@local.test"):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if subject in raw.decode("utf-8", "replace") and "Delayed" in str(msg["Subject"]):
            out.append(msg)
    return out


def test_delay_warning_sent_once():
    s = sink(soft_reject=["RCPT"], soft_reply="450 4.2.0 mailbox busy")
    v = vsmtpd(s, delay_warning="1s", retry_min="1s", retry_max="1s", lifetime="1h")
    try:
        qid = send(v, ["bob@ok.test"], "slow mailbox")
        wait_until(lambda: delay_dsns(v, "slow mailbox"), timeout=20, what="a delay warning")
        dsn = delay_dsns(v, "slow mailbox")[0]
        assert str(dsn["Subject"]) == "Delayed Mail (still being retried)", dsn["Subject"]
        groups = status_groups(dsn)
        assert len(groups) == 1, groups
        g = groups[0]
        assert g["final-recipient"] == "rfc822; bob@ok.test", g
        assert g["action"] == "delayed" and g["status"].startswith("4."), g
        assert "450 4.2.0 mailbox busy" in g["diagnostic-code"], g
        assert "will-retry-until" in g, g
        # a delay warning does not return the message: headers only
        parts = list(dsn.iter_parts())
        assert parts[2].get_content_type() == "text/rfc822-headers", parts[2].get_content_type()
        # more attempts follow: still one warning
        v.wait_log(rf"id={qid} delivery: .*to=<bob@ok\.test> deferred", count=4, timeout=20)
        time.sleep(1)
        assert len(delay_dsns(v, "slow mailbox")) == 1, "more than one delay warning"
        assert v.envelope(qid)["delay_warned"] is True, v.envelope(qid)
        assert len(re.findall(rf"id={qid} delivery: sender delay notification", v.log())) == 1
    finally:
        v.stop()
        s.stop()


def test_delay_warning_notify_never():
    s = sink(soft_reject=["RCPT"])
    v = vsmtpd(s, delay_warning="1s", retry_min="1s", retry_max="1s", lifetime="1h")
    try:
        with v.smtp() as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<alice@local.test>").code == 250
            assert c.cmd("RCPT TO:<bob@ok.test> NOTIFY=NEVER").code == 250
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: never tell\r\n\r\nbody\r\n.\r\n")
            assert c.reply().code == 250
        v.wait_log(r"to=<bob@ok\.test> deferred", count=3, timeout=20)
        assert delay_dsns(v, "never tell") == []
        assert "delay notification" not in v.log()
    finally:
        v.stop()
        s.stop()


def test_postq_route_kept_for_retries():
    s = sink(soft_reject=["RCPT"])
    d = tmpdir()
    rules = ("postq {\n"
             f'  rule "to the sink" when header("Subject") == "routed" => '
             f'deliver relay "[127.0.0.1]:{s.port}"\n'
             "}\n")
    v = Vsmtpd(rules=rules, dir=d, settings={
        "queue": {"run_interval": "500ms", "retry_min": "1s", "retry_max": "1s"},
        "delivery": {"default": f"maildir:{d}/mail/%d/%l"},
        "dns": {"nameserver": dns().address(), "timeout": "2s"},
    }).start()
    try:
        qid = send(v, ["bob@ok.test"], "routed")
        other = send(v, ["carol@ok.test"], "not routed")
        v.wait_log(rf"id={qid} delivery: .*to=<bob@ok\.test> deferred: .*said: 4", timeout=15)
        # the envelope is written after the attempt's log lines
        env = wait_until(lambda: (e := v.envelope(qid))["attempts"] >= 1 and e, timeout=10,
                         what="the envelope of the first attempt")
        assert env["route"] == f"relay:[127.0.0.1]:{s.port}", env
        assert env["postq"] is True, env
        # the other message took [delivery] default
        assert v.wait_maildir("carol@ok.test")
        s = accepting_sink(s)
        msgs = s.wait_messages(1, timeout=20)
        assert msgs[0].rcpt_args == ["<bob@ok.test>"], msgs[0].rcpt_args
        wait_until(lambda: v.queue_ids() == [], what="queue empty")
        log = v.log()
        assert len(re.findall(rf"id={qid} postq: routed by rule \"to the sink\"", log)) == 1, log
        assert f"id={other} postq: routed" not in log
    finally:
        v.stop()
        s.stop()


if __name__ == "__main__":
    try:
        run([test_slow_destination_does_not_delay_others, test_global_connection_limit,
             test_delay_warning_sent_once, test_delay_warning_notify_never,
             test_postq_route_kept_for_retries])
    finally:
        cleanup()
