#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""rate(), concurrency() and greylisting in vpsd against real state: a real
redis-server started here (free port, temporary directory, no persistence)
shared by two vpsd instances, and the in-memory backend.

Covers: two vpsd share one rate limit, one greylist and one concurrency
count; the documented keys are namespaced (vps:) and every one carries an
expiry; Redis stalled (DEBUG SLEEP) or killed mid-run -> the configured
fallback ([state] on_error = pass: nothing limited, greylisting lets mail
through, warned once a minute; on_error = tempfail: 451 4.3.0) within the
timeout, never a stuck request; Redis back or restarted -> limits resume;
greylisting at data checks every recipient (vpsctl run, one process per run,
through Redis); vpsd --check refuses a [greylist] that cannot work; the
postgrey semantics in memory (retry before the delay deferred again, after
it passed, the /24 network, the sender substitutions, auto-whitelisting,
whitelist_clients).

The client side is our own Postfix policy delegation client (one request per
SMTP step, as Postfix 3.7 sends them)."""
import json, os, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir, free_port
from postfixlib import wait_listening
import vpsdlib

VPSD = vpsdlib.VPSD
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"

RULES = r'''
connect {
  rule "flood" when client.ip in [192.0.2.0/24] and not rate("conn:" + client.ip, 3, 1m)
    => tempfail 421 4.7.0 "Slow down"
  rule "too many" when client.ip in [198.51.100.0/24] and concurrency(client.ip) > 1
    => tempfail 421 4.7.0 "Too many sessions"
}
rcpt {
  rule "greylisting" when client.ip in [203.0.113.0/24] => greylist
}
'''


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Redis:
    def __init__(self, port=None):
        self.dir = tmpdir()
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--enable-debug-command", "yes"],
            stdout=open(os.path.join(self.dir, "redis.log"), "a"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        taplib._procs.append(self.proc)
        wait_listening(self.port, alive=lambda: self.proc.poll() is None)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args):
        return subprocess.run([REDIS_CLI, "-p", str(self.port), "--raw", *args],
                              capture_output=True, text=True, timeout=10).stdout.strip()


class Vpsd(vpsdlib.Vpsd):
    """A vpsd with the policy front end on a free port, started at once."""

    def __init__(self, state="", greylist="delay = 2s\nretry_window = 1h\nauto_whitelist = 0",
                 rules=RULES):
        self.port = free_port()
        super().__init__(f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 1s
[policy]
listen = inet:127.0.0.1:{self.port}
[state]
{state}
[greylist]
{greylist}
[quarantine]
dir = q
[log]
target = stderr
level = info
""", rules)
        self.start(wait_port=self.port)

    def stop(self):
        return super().stop(timeout=15)


def redis_state(redis, extra=""):
    return f"backend = redis\naddress = 127.0.0.1:{redis.port}\ntimeout = 300ms\n{extra}"


_ports = iter(range(41000, 60000))


class Policy:
    """One policy connection: the requests of SMTP sessions one after the other."""

    def __init__(self, vpsd, client):
        self.sock = socket.create_connection(("127.0.0.1", vpsd.port), timeout=10)
        self.buf = b""
        self.client = client

    def ask(self, state, **attrs):
        a = {"request": "smtpd_access_policy", "protocol_state": state,
             "protocol_name": "ESMTP", "client_address": self.client,
             "client_port": str(next(_ports)), "client_name": "unknown",
             "reverse_client_name": "unknown", "server_address": "127.0.0.1",
             "server_port": "25", "helo_name": "client.example", "queue_id": "",
             "size": "0", "sasl_method": "", "sasl_username": "", "recipient_count": "0"}
        a.update(attrs)
        self.sock.sendall("".join(f"{k}={v}\n" for k, v in a.items()).encode() + b"\n")
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        r, self.buf = self.buf.split(b"\n\n", 1)
        line = r.decode()
        assert line.startswith("action="), line
        return line[len("action="):]

    def close(self):
        self.sock.close()


def connect_once(vpsd, client):
    p = Policy(vpsd, client)
    try:
        return p.ask("CONNECT")
    finally:
        p.close()


_instances = iter(range(1, 1000000))


def rcpt_once(vpsd, client, sender, rcpt):
    """One SMTP transaction up to RCPT TO, as Postfix asks it."""
    p = Policy(vpsd, client)
    try:
        inst = f"t{next(_instances)}"
        p.ask("CONNECT")
        p.ask("MAIL", sender=sender)
        return p.ask("RCPT", sender=sender, recipient=rcpt, instance=inst, recipient_count="0")
    finally:
        p.close()


GREY_REPLY = "450 4.2.0 Greylisted, please try again later"

R = None
A = None
B = None


def setup():
    global R, A, B
    if R is None:
        R = Redis()
        A = Vpsd(state=redis_state(R))
        B = Vpsd(state=redis_state(R))


def test_two_vpsd_share_one_rate_limit():
    setup()
    answers = [connect_once(A if i % 2 == 0 else B, "192.0.2.7") for i in range(5)]
    assert answers[:3] == ["DUNNO"] * 3, answers
    assert answers[3:] == ["421 4.7.0 Slow down"] * 2, answers
    # another client has its own count
    assert connect_once(B, "192.0.2.8") == "DUNNO"
    # the key is namespaced and expires with the period
    assert R.cli("EXISTS", "vps:rate:conn:192.0.2.7") == "1"
    ttl = int(R.cli("PTTL", "vps:rate:conn:192.0.2.7"))
    assert 0 < ttl <= 60000, ttl


def test_two_vpsd_share_one_greylist():
    setup()
    s, r = "alice@example.com", "bob@example.org"
    assert rcpt_once(A, "203.0.113.5", s, r) == GREY_REPLY
    # the other instance knows the triplet: retried before the delay, deferred again
    assert rcpt_once(B, "203.0.113.5", s, r) == GREY_REPLY
    key = "vps:grey:t:203.0.113.0/alice@example.com/bob@example.org"
    assert R.cli("EXISTS", key) == "1", R.cli("KEYS", "vps:*")
    assert 0 < int(R.cli("PTTL", key)) <= 3600 * 1000
    time.sleep(2.3)
    # after the delay, from the same /24 on the other instance: passes
    assert rcpt_once(B, "203.0.113.77", s, r) == "DUNNO"
    assert rcpt_once(A, "203.0.113.5", s, r) == "DUNNO"
    # passed triplets are remembered for lifetime (35d by default)
    assert int(R.cli("PTTL", key)) > 34 * 86400 * 1000
    # another recipient is another triplet
    assert rcpt_once(A, "203.0.113.5", s, "carol@example.org") == GREY_REPLY


def test_two_vpsd_share_one_concurrency_count():
    setup()
    x = Policy(A, "198.51.100.9")
    assert x.ask("CONNECT") == "DUNNO"            # 1 open session
    y = Policy(B, "198.51.100.9")
    assert y.ask("CONNECT") == "421 4.7.0 Too many sessions"   # 2 > 1, counted across instances
    assert R.cli("ZCARD", "vps:conc:198.51.100.9") == "2"
    assert 0 < int(R.cli("PTTL", "vps:conc:198.51.100.9")) <= 30 * 60 * 1000
    # the sessions end with their connections: both leave the count
    x.close()
    y.close()
    deadline = time.time() + 5
    while R.cli("ZCARD", "vps:conc:198.51.100.9") != "0" and time.time() < deadline:
        time.sleep(0.05)
    assert R.cli("ZCARD", "vps:conc:198.51.100.9") == "0"
    z = Policy(B, "198.51.100.9")
    assert z.ask("CONNECT") == "DUNNO"
    z.close()


def test_every_key_is_namespaced_and_expires():
    setup()
    keys = [k for k in R.cli("KEYS", "*").splitlines() if k]
    assert keys, "no keys"
    for k in keys:
        assert k.startswith("vps:"), k
        ttl = int(R.cli("PTTL", k))
        # -1 would be a key without expiry; -2 one removed since KEYS (a
        # session's last member leaving)
        assert ttl > 0 or ttl == -2, (k, ttl)


def test_slow_redis_is_the_fallback_within_the_timeout():
    setup()
    client = "192.0.2.120"
    for _ in range(3):
        assert connect_once(A, client) == "DUNNO"
    assert connect_once(A, client) == "421 4.7.0 Slow down"
    # Redis stalls for 2 s (DEBUG SLEEP blocks the server): [state] timeout
    # is 300 ms, so the check gives up and on_error = pass lets it through
    sleeper = subprocess.Popen([REDIS_CLI, "-p", str(R.port), "DEBUG", "SLEEP", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        t0 = time.time()
        assert connect_once(B, client) == "DUNNO"
        assert time.time() - t0 < 1.5, time.time() - t0
    finally:
        sleeper.wait(timeout=10)
    # Redis answers again: the limit holds again
    deadline = time.time() + 10
    while connect_once(B, client) != "421 4.7.0 Slow down":
        assert time.time() < deadline, "the limit did not resume"
        time.sleep(0.2)


def test_redis_killed_then_restarted():
    setup()
    client = "192.0.2.99"
    assert connect_once(A, client) == "DUNNO"

    def warnings(v):
        return [l for l in v.log().splitlines() if "state backend" in l and "failed" in l]

    before = {v: len(warnings(v)) for v in (A, B)}
    R.kill()
    # on_error = pass: nothing limited, answered within the timeout, never stuck
    for i in range(5):
        t0 = time.time()
        assert connect_once(A if i % 2 else B, client) == "DUNNO"
        assert time.time() - t0 < 3, time.time() - t0
    t0 = time.time()
    assert rcpt_once(A, "203.0.113.200", "new@example.com", "x@example.org") == "DUNNO"
    assert time.time() - t0 < 3
    # warned, at most once a minute per process (B may have warned in the
    # previous test already)
    for v in (A, B):
        assert len(warnings(v)) >= 1, v.log()[-2000:]
        assert len(warnings(v)) - before[v] <= 1, warnings(v)
    # Redis back (empty: no persistence) -> limits resume
    R.start()
    deadline = time.time() + 15
    answers = []
    while time.time() < deadline:
        answers.append(connect_once(A, "192.0.2.150"))
        if answers[-1] != "DUNNO":
            break
        time.sleep(0.2)
    assert answers[-1] == "421 4.7.0 Slow down", answers
    assert R.cli("EXISTS", "vps:rate:conn:192.0.2.150") == "1"


DATA_RULES = r'''
data {
  rule "greylist every recipient" => greylist
}
'''


def vpsctl_run(d, *args):
    p = subprocess.run([os.environ["VPSCTL"], "-c", os.path.join(d, "vps.conf"), "run",
                        os.path.join(d, "m.eml"), "--json", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


def test_data_stage_greylists_every_recipient():
    """vpsctl run (one process per run) shares the greylist through Redis:
    at data every accepted recipient's triplet is checked and recorded."""
    setup()
    d = tmpdir()
    write(os.path.join(d, "rules.vsl"), DATA_RULES)
    write(os.path.join(d, "m.eml"), "From: a@example.com\nSubject: x\n\nbody\n")
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
[state]
{redis_state(R)}
[greylist]
delay = 2s
retry_window = 1h
auto_whitelist = 0
[quarantine]
dir = q
""")
    args = ["--from", "multi@example.com", "--rcpt", "one@example.org", "--rcpt",
            "two@example.org", "--client-ip", "203.0.113.40"]
    r = vpsctl_run(d, *args)
    assert r["verdict"] == "tempfail" and r["stage"] == "data", r
    assert r["code"] == 450 and r["text"] == "Greylisted, please try again later", r
    for rcpt in ("one@example.org", "two@example.org"):
        assert R.cli("EXISTS", f"vps:grey:t:203.0.113.0/multi@example.com/{rcpt}") == "1"
    assert vpsctl_run(d, *args)["verdict"] == "tempfail"
    time.sleep(2.3)
    # both passed; a third recipient is new: the message waits for it
    assert vpsctl_run(d, *args)["verdict"] != "tempfail"
    r = vpsctl_run(d, *args, "--rcpt", "three@example.org")
    assert r["verdict"] == "tempfail", r


def test_on_error_tempfail():
    down = free_port()
    v = Vpsd(state=f"backend = redis\naddress = 127.0.0.1:{down}\ntimeout = 200ms\n"
                   "on_error = tempfail")
    try:
        t0 = time.time()
        assert connect_once(v, "192.0.2.1") == "451 4.3.0 Policy state unavailable, try again later"
        assert time.time() - t0 < 3
        # a stage without state checks is not affected
        assert connect_once(v, "10.0.0.1") == "DUNNO"
    finally:
        v.stop()


def test_memory_greylisting_follows_postgrey():
    v = Vpsd(greylist="delay = 1s\nretry_window = 1h\nauto_whitelist = 1\n"
                      "whitelist_clients = 203.0.113.128/25")
    try:
        s, r = "list-bounces+bob=example.org@lists.example.com", "Bob@Example.org"
        assert rcpt_once(v, "203.0.113.5", s, r) == GREY_REPLY
        assert rcpt_once(v, "203.0.113.5", s, r) == GREY_REPLY     # before the delay
        time.sleep(1.3)
        # the same triplet after the delay: the /24, the +extension dropped,
        # the recipient's case ignored
        assert rcpt_once(v, "203.0.113.6", "list-bounces@lists.example.com",
                         "bob@example.org") == "DUNNO"
        # 203.0.113.5 did not pass (its attempts were deferred): its new triplet waits ...
        assert rcpt_once(v, "203.0.113.5", "x@example.com", "y@example.org") == GREY_REPLY
        # ... but 203.0.113.6 passed once: with auto_whitelist = 1 it is
        # whitelisted (postgrey counts the client address, not the network)
        assert rcpt_once(v, "203.0.113.6", "x@example.com", "y@example.org") == "DUNNO"
        # VERP numbers are one triplet: bounce-123 and bounce-456, also behind
        # a BATV tag (prvs=TAG=LOCAL)
        assert rcpt_once(v, "203.0.113.60", "bounce-123@example.net", "z@example.org") == GREY_REPLY
        time.sleep(1.3)
        assert rcpt_once(v, "203.0.113.61", "prvs=0123456789=bounce-456@Example.NET",
                         "z@example.org") == "DUNNO"
        # whitelist_clients are never greylisted
        assert rcpt_once(v, "203.0.113.200", "a@b.example", "c@d.example") == "DUNNO"
    finally:
        v.stop()


def test_memory_rate_and_concurrency():
    v = Vpsd()
    try:
        answers = [connect_once(v, "192.0.2.30") for _ in range(4)]
        assert answers == ["DUNNO"] * 3 + ["421 4.7.0 Slow down"], answers
        x = Policy(v, "198.51.100.30")
        assert x.ask("CONNECT") == "DUNNO"
        y = Policy(v, "198.51.100.30")
        assert y.ask("CONNECT") == "421 4.7.0 Too many sessions"
        x.close()
        y.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            z = Policy(v, "198.51.100.30")
            a = z.ask("CONNECT")
            z.close()
            if a == "DUNNO":
                break
            time.sleep(0.1)
        assert a == "DUNNO", a
    finally:
        v.stop()


def test_check_refuses_a_greylist_that_cannot_work():
    d = tmpdir()
    write(os.path.join(d, "rules.vsl"), RULES)
    for greylist, needle in (
            ("delay = 5m\nretry_window = 2m", "[greylist] retry_window: must be longer than delay"),
            ("code = 450\nenhanced = 5.7.1", "[greylist] enhanced: the reply 450 5.7.1"),
            ("code = 500", "[greylist] code: out of range")):
        write(os.path.join(d, "vps.conf"), f"[vpsd]\nrules = rules.vsl\n[greylist]\n{greylist}\n"
                                           "[quarantine]\ndir = q\n")
        p = subprocess.run([VPSD, "-c", os.path.join(d, "vps.conf"), "--check"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (greylist, p.stdout, p.stderr)
        assert needle in p.stdout + p.stderr, (greylist, p.stdout, p.stderr)


if __name__ == "__main__":
    run([test_two_vpsd_share_one_rate_limit, test_two_vpsd_share_one_greylist,
         test_two_vpsd_share_one_concurrency_count, test_every_key_is_namespaced_and_expires,
         test_data_stage_greylists_every_recipient,
         test_slow_redis_is_the_fallback_within_the_timeout, test_redis_killed_then_restarted,
         test_on_error_tempfail,
         test_memory_greylisting_follows_postgrey, test_memory_rate_and_concurrency,
         test_check_refuses_a_greylist_that_cannot_work])
