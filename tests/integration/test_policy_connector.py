#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `policy` connector against real policy services and scripted ones.

Real peers: postgrey (greylisting: first attempt deferred, a retry after
--delay passes with an X-Greylist header), policyd-spf (Debian's
postfix-policyd-spf-python behind a small socket adapter, SPF lookups
answered by a dnsmasq on a free port), and vpsd's own policy front end
(vpsd chained to a second vpsd).  A scripted server written here from
SMTPD_POLICY_README checks the attributes we send and plays every action
kind, slowness, garbage, and connections closed while idle or mid-request.

The connector is driven by `vpsctl run` (one process, one pool: every call
of the stages of one message) and by vpsd's milter front end (many
sessions at once on one pool per worker)."""
import json, os, re, shutil, socket, struct, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
import reportlib
from reportlib import milter_connect_verdict, milter_pkt, milter_read, mods, stage


def results(report, stage_name, connector="pol"):
    return reportlib.results(report, stage_name, connector)


from taplib import run, tmpdir

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]
PY = "/usr/bin/python3"  # Debian's python3-* modules (policyd-spf) are visible to it only

# Postfix 3.7's attributes, in its order (SMTPD_POLICY_README)
POSTFIX_ATTRS = """request protocol_state protocol_name helo_name queue_id sender recipient
recipient_count client_address client_name reverse_client_name instance sasl_method
sasl_username sasl_sender size ccert_subject ccert_issuer ccert_fingerprint
ccert_pubkey_fingerprint encryption_protocol encryption_cipher encryption_keysize
etrn_domain stress client_port policy_context server_address server_port""".split()

MESSAGE = "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ---- a scripted policy server ----------------------------------------------

class PolicyServer:
    """Reads requests (name=value lines, empty line) and answers with
    handler(request_dict, n) where n counts the requests on this connection
    (1 for the first).  The handler returns an action value (str), raw reply
    bytes, ("close",) to close without answering, or ("sleep", s, value).
    idle_close: close a connection idle this many seconds."""

    def __init__(self, handler, unix_path=None, idle_close=None):
        self.handler = handler
        self.idle_close = idle_close
        self.requests = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.lock = threading.Lock()
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.address = f"unix:{unix_path}"
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"inet:127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        n = 0
        try:
            while True:
                c.settimeout(self.idle_close)
                req, order = {}, []
                try:
                    while True:
                        line = f.readline()
                        if not line:
                            return
                        c.settimeout(None)
                        if line == b"\n":
                            break
                        k, v = line.decode().rstrip("\n").split("=", 1)
                        req[k] = v
                        order.append(k)
                except (socket.timeout, TimeoutError):
                    return  # idle too long: close
                n += 1
                req["_order"] = order
                with self.lock:
                    self.requests.append(req)
                out = self.handler(req, n)
                if isinstance(out, tuple) and out[0] == "sleep":
                    time.sleep(out[1])
                    out = out[2]
                if isinstance(out, tuple) and out[0] == "close":
                    return
                if isinstance(out, tuple) and out[0] == "send_close":
                    c.sendall(out[1])
                    return
                if isinstance(out, str):
                    out = f"action={out}\n\n".encode()
                c.sendall(out)
        except OSError:
            return
        finally:
            with self.lock:
                self.open_now -= 1
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self):
        self.sock.close()


# ---- vpsctl run ------------------------------------------------------------

def make_conf(d, connectors, rules, extra=""):
    write(os.path.join(d, "rules.vsl"), rules)
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 2
[log]
level = info
[quarantine]
dir = q
names = held
{connectors}
{extra}
""")
    write(os.path.join(d, "m.eml"), MESSAGE)
    return os.path.join(d, "vps.conf")


def vpsctl_run(d, *args):
    p = subprocess.run([VPSCTL, "-c", os.path.join(d, "vps.conf"), "run",
                        os.path.join(d, "m.eml"), "--json", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout), p.stderr


def policy_block(address, name="pol", extra="", timeout="2s"):
    return f"[connector {name}]\ntype = policy\naddress = {address}\ntimeout = {timeout}\n{extra}\n"


# ---- scripted server tests -------------------------------------------------

def test_attributes_sent_per_stage():
    srv = PolicyServer(lambda req, n: "DUNNO")
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="policy_context = smtpd-test"), """
connect { rule "c" => call pol }
helo { rule "h" => call pol }
mail { rule "m" => call pol }
rcpt { rule "r" => call pol }
data { rule "d" => call pol }
""")
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org",
                           "--rcpt", "carol@example.org", "--client-ip", "192.0.2.7",
                           "--helo", "mx.example.com")
    assert report["verdict"] == "accept", report
    reqs = srv.requests
    states = [r["protocol_state"] for r in reqs]
    assert states == ["CONNECT", "EHLO", "MAIL", "RCPT", "RCPT", "END-OF-MESSAGE"], states
    for r in reqs:
        assert r["_order"] == POSTFIX_ATTRS, r["_order"]
        assert r["request"] == "smtpd_access_policy"
        assert r["client_address"] == "192.0.2.7"
        assert r["client_name"] == "unknown" and r["reverse_client_name"] == "unknown"
        assert r["policy_context"] == "smtpd-test"
    connect, helo, mail, rcpt1, rcpt2, eom = reqs
    assert connect["helo_name"] == "" and connect["sender"] == ""
    assert helo["helo_name"] == "mx.example.com"
    assert mail["sender"] == "alice@example.com" and mail["recipient"] == ""
    # Postfix: instance empty at CONNECT, HELO and MAIL, then one per message
    assert connect["instance"] == helo["instance"] == mail["instance"] == ""
    assert rcpt1["instance"] != "" and rcpt1["instance"] == rcpt2["instance"] == eom["instance"]
    assert rcpt1["recipient"] == "bob@example.org" and rcpt2["recipient"] == "carol@example.org"
    assert rcpt1["recipient_count"] == "0"
    # two recipients: Postfix sends no single recipient at END-OF-MESSAGE
    assert eom["recipient"] == "" and eom["recipient_count"] == "2", eom
    assert eom["size"] == str(len(MESSAGE)), (eom["size"], len(MESSAGE))
    # one process, one pool: everything on one connection
    assert srv.connections == 1, srv.connections
    # a second message (a new process) gets a new instance
    vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    assert srv.requests[-2]["instance"] not in ("", rcpt1["instance"]), srv.requests[-2]


def test_every_action_kind():
    # (action, verdict, code, enhanced, text, action field, modifications)
    cases = [
        ("OK", "accept", None, None, None, "OK", []),
        ("ok whatever", "accept", None, None, None, "OK", []),
        ("12345", "accept", None, None, None, "OK", []),
        ("DUNNO", "continue", None, None, None, "DUNNO", []),
        ("REJECT", "reject", None, None, None, "REJECT", []),
        ("REJECT 5.7.2 Go away", "reject", None, "5.7.2", "Go away", "REJECT", []),
        ("reject No thanks", "reject", None, None, "No thanks", "REJECT", []),
        ("DEFER Later", "tempfail", None, None, "Later", "DEFER", []),
        ("DEFER_IF_PERMIT Greylisted", "tempfail", None, None, "Greylisted", "DEFER_IF_PERMIT", []),
        ("DEFER_IF_REJECT Maybe", "continue", None, None, "Maybe", "DEFER_IF_REJECT", []),
        ("550 5.1.1 No such user", "reject", 550, "5.1.1", "No such user", "550", []),
        ("451 4.3.0 Try later", "tempfail", 451, "4.3.0", "Try later", "451", []),
        ("554 Plain", "reject", 554, None, "Plain", "554", []),
        ("HOLD Suspicious", "quarantine", None, None, "Suspicious", "HOLD", []),
        ("DISCARD Silently", "discard", None, None, "Silently", "DISCARD", []),
        ("PREPEND X-Policy: checked", "continue", None, None, "X-Policy: checked", "PREPEND",
         [("insert_header", "X-Policy", "checked")]),
        ("BCC archive@example.net", "continue", None, None, "archive@example.net", "BCC",
         [("add_rcpt", None, "archive@example.net")]),
        ("REDIRECT other@example.net", "continue", None, None, "other@example.net", "REDIRECT",
         [("remove_rcpt", None, "bob@example.org"), ("add_rcpt", None, "other@example.net")]),
        ("FILTER smtp:[127.0.0.1]:10025", "continue", None, None, "smtp:[127.0.0.1]:10025",
         "FILTER", []),
        ("WARN Odd", "continue", None, None, "Odd", "WARN", []),
        ("INFO Note", "continue", None, None, "Note", "INFO", []),
        ("permit_mynetworks", "continue", None, None, "permit_mynetworks", "permit_mynetworks", []),
    ]
    current = {}
    srv = PolicyServer(lambda req, n: current["action"])
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="quarantine = held"),
              'rcpt { rule "r" => call pol }\n')
    for action, verdict, code, enhanced, text, word, mods in cases:
        current["action"] = action
        report, stderr = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
        (r,) = results(report, "rcpt")
        what = (action, r, report["modifications"])
        assert r["error"] is False, what
        assert r["verdict"] == verdict, what
        assert r["code"] == code, what
        assert r["enhanced"] == enhanced, what
        assert r["text"] == text, what
        assert r["fields"]["action"] == word, what
        got = [(m["op"], m.get("name"), m.get("value")) for m in report["modifications"]
               if m["op"] != "quarantine"]
        assert got == mods, what
        s = stage(report, "rcpt")
        assert s["verdict"] == verdict, (action, s)
        if code is not None:
            # a code without enhanced code gets the class default (proto/mail)
            assert (s["code"], s["enhanced"], s["text"]) == \
                (code, enhanced or f"{code // 100}.7.1", text), (action, s)
        elif verdict == "reject":
            assert s["code"] == 550 and s["enhanced"] == (enhanced or "5.7.1"), (action, s)
        elif verdict == "tempfail":
            assert s["code"] == 450 and s["enhanced"] == "4.7.1", (action, s)
        if verdict == "quarantine":
            assert report.get("quarantine") == "held" or s.get("quarantine") == "held", report
        if word == "WARN":
            assert "WARN Odd" in stderr, stderr


def test_rules_read_action_and_text():
    srv = PolicyServer(lambda req, n: "DEFER_IF_REJECT Greylisted, come back")
    d = tmpdir()
    make_conf(d, policy_block(srv.address), """
rcpt {
  rule "ask" => call pol
  rule "seen" when pol.action == "DEFER_IF_REJECT" and pol.text =~ /Greylisted/ => reject 550 5.7.1 "both"
}
""")
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    s = stage(report, "rcpt")
    assert (s["verdict"], s["text"], s["rule"]) == ("reject", "both", "seen"), s


def test_slow_service_times_out_to_on_error():
    srv = PolicyServer(lambda req, n: ("sleep", 3, "OK"))
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="on_error = reject", timeout="300ms"),
              'rcpt { rule "r" => call pol }\n')
    t0 = time.time()
    report, stderr = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    took = time.time() - t0
    (r,) = results(report, "rcpt")
    assert r["error"] is True and r["verdict"] == "reject", r
    assert stage(report, "rcpt")["verdict"] == "reject"
    assert took < 2.5, took  # the answer is not waited for
    assert "pol" in stderr, stderr  # a warning line names the connector


def test_garbage_replies_give_on_error():
    cases = [
        b"hello\n\n",                          # no '='
        b"action=\n\n",                        # empty action
        b"result=OK\n\n",                      # no action attribute
        b"action=OK\naction=DUNNO\n\n",        # two actions
        b"action=PREPEND not a header\n\n",    # PREPEND without "name: value"
        b"action=REDIRECT\n\n",                # REDIRECT without address
        b"action=OK\x00\n\n",                  # NUL
        b"action=OK\n\naction=OK\n\n",         # two replies for one request
        b"action=" + b"A" * 20000 + b"\n\n",   # over the reply limit
        ("send_close", b"action=OK\n"),       # no empty line, then close
        ("close",),                            # nothing at all
    ]
    current = {}
    srv = PolicyServer(lambda req, n: current["out"])
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="on_error = tempfail\nretries = 0"),
              'rcpt { rule "r" => call pol }\n')
    for out in cases:
        current["out"] = out
        report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
        (r,) = results(report, "rcpt")
        assert r["error"] is True and r["verdict"] == "tempfail", (out[:40], r)
        assert r["elapsed"] < 1000, (out[:40], r)  # detected, not timed out
        assert stage(report, "rcpt")["verdict"] == "tempfail", out[:40]
    # and a good answer afterwards works (nothing stuck)
    current["out"] = "REJECT fine"
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    assert results(report, "rcpt")[0]["verdict"] == "reject"


def test_connection_refused_retries_then_on_error():
    port = free_port()  # nothing listens
    d = tmpdir()
    make_conf(d, policy_block(f"inet:127.0.0.1:{port}", extra="on_error = accept\nretries = 2"),
              'rcpt { rule "r" => call pol }\n')
    t0 = time.time()
    report, stderr = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    (r,) = results(report, "rcpt")
    assert r["error"] is True and r["verdict"] == "accept", r
    assert "refused" in (r.get("error_message") or "").lower(), r
    assert time.time() - t0 < 2.5


def test_peer_closing_idle_connections_is_no_error():
    # The server closes a connection idle for 0.2 s; the slow test connector
    # between two calls leaves our pooled connection idle for 0.6 s.
    srv = PolicyServer(lambda req, n: "DUNNO", idle_close=0.2)
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="retries = 0") +
              "[connector slow]\ntype = test\ndelay = 600ms\n", """
mail { rule "m" => call pol }
rcpt { rule "s" => call slow
       rule "r" => call pol }
data { rule "s" => call slow
       rule "d" => call pol }
""")
    report, stderr = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    rs = results(report, "mail") + results(report, "rcpt") + results(report, "data")
    assert len(rs) == 3 and all(not r["error"] for r in rs), rs
    assert len(srv.requests) == 3
    assert srv.connections == 3, srv.connections  # a new one after each idle close


def test_idle_timeout_closes_our_side():
    # The server keeps connections forever; we close ours after 200 ms idle.
    srv = PolicyServer(lambda req, n: "DUNNO")
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="idle_timeout = 200ms") +
              "[connector slow]\ntype = test\ndelay = 700ms\n", """
mail { rule "m" => call pol }
rcpt { rule "s" => call slow
       rule "r" => call pol }
""")
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    rs = results(report, "mail") + results(report, "rcpt")
    assert len(rs) == 2 and all(not r["error"] for r in rs), rs
    assert srv.connections == 2, srv.connections
    # with the default (60s) the same run keeps one connection
    srv2 = PolicyServer(lambda req, n: "DUNNO")
    make_conf(d, policy_block(srv2.address) + "[connector slow]\ntype = test\ndelay = 700ms\n", """
mail { rule "m" => call pol }
rcpt { rule "s" => call slow
       rule "r" => call pol }
""")
    vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    assert srv2.connections == 1, srv2.connections


def test_peer_dropping_a_reused_connection_mid_request_is_no_error():
    # Answers only the first request of a connection and closes on the
    # second without a reply: the request must go out again on a new one,
    # and even with retries = 0 that is no error.
    srv = PolicyServer(lambda req, n: "DUNNO" if n == 1 else ("close",))
    d = tmpdir()
    make_conf(d, policy_block(srv.address, extra="retries = 0"), """
connect { rule "c" => call pol }
mail { rule "m" => call pol }
rcpt { rule "r" => call pol }
data { rule "d" => call pol }
""")
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    rs = [r for s in report["stages"] for r in s["results"]]
    assert len(rs) == 4 and all(not r["error"] for r in rs), rs
    answered = [r for r in srv.requests]
    assert len(answered) == 7, len(answered)  # 3 lost on reused connections, 4 answered
    assert srv.connections == 4, srv.connections


def test_unix_socket_and_relative_path():
    d = tmpdir()
    srv = PolicyServer(lambda req, n: "REJECT 5.7.1 via unix", unix_path=os.path.join(d, "pol.sock"))
    make_conf(d, policy_block("unix:pol.sock"), 'rcpt { rule "r" => call pol }\n')
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org")
    s = stage(report, "rcpt")
    assert (s["verdict"], s["text"]) == ("reject", "via unix"), s
    assert srv.connections == 1


def test_config_errors():
    cases = [
        ("", "address"),                                    # required
        ("address = tcp:1.2.3.4:5", "address"),
        ("address = inet:127.0.0.1:0", "address"),
        ("address = inet:127.0.0.1:1\nmax_connections = 0", "max_connections"),
        ("address = inet:127.0.0.1:1\nretries = many", "retries"),
        ("address = inet:127.0.0.1:1\nidle_timeout = soon", "idle_timeout"),
        ("address = inet:127.0.0.1:1\nurl = http://x/", "url"),
    ]
    for body, key in cases:
        d = tmpdir()
        conf = make_conf(d, f"[connector pol]\ntype = policy\n{body}\n",
                         'rcpt { rule "r" => call pol }\n')
        p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1, (body, p.stdout, p.stderr)
        assert "vps.conf:" in p.stderr and "[connector pol]" in p.stderr and key in p.stderr, \
            (body, p.stderr)
    # unknown field of the connector in a rule
    d = tmpdir()
    conf = make_conf(d, policy_block("inet:127.0.0.1:1"),
                     'rcpt { rule "r" => call pol\n rule "x" when pol.nosuch == "a" => accept }\n')
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "nosuch" in p.stderr, p.stderr


# ---- many sessions at once: vpsd's milter front end --------------------------

def start_vpsd(d, conf, needle, timeout=15):
    log = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", conf], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    taplib._procs.append(proc)
    deadline = time.time() + timeout
    while needle not in open(log).read():
        assert proc.poll() is None and time.time() < deadline, open(log).read()
        time.sleep(0.05)
    return proc, log


def test_pool_limit_with_concurrent_sessions():
    srv = PolicyServer(lambda req, n: ("sleep", 0.1, "REJECT 5.7.1 no" if
                                       req["client_address"].endswith(".66") else "DUNNO"))
    d = tmpdir()
    port = free_port()
    conf = make_conf(d, policy_block(srv.address, extra="max_connections = 2", timeout="10s"),
                     'connect { rule "c" => call pol }\n',
                     extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    proc, log = start_vpsd(d, conf, "milter: listening on")
    out = {}

    def one(i):
        ip = f"192.0.2.{66 if i % 5 == 0 else i + 1}"
        out[i] = milter_connect_verdict(port, ip)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 30, out
    for i, cmd in out.items():
        want = (b"r", b"y") if i % 5 == 0 else (b"c",)
        assert cmd in want, (i, cmd)
    assert len(srv.requests) == 30
    # two workers, two connections each at most, kept between sessions
    assert srv.max_open <= 4, srv.max_open
    assert srv.connections <= 4, srv.connections
    proc.terminate()
    assert proc.wait(timeout=20) == 0, open(log).read()[-3000:]
    assert "Sanitizer" not in open(log).read(), open(log).read()[-3000:]


# ---- postgrey ---------------------------------------------------------------

def docs_block(lang):
    """The ```LANG example of the `policy` section of docs/connectors.md."""
    text = open(os.path.join(SRC, "docs", "connectors.md")).read()
    section = text[text.index("## `policy`"):]
    m = re.search(r"```" + lang + r"\n(.*?)```", section, re.S)
    assert m, f"no {lang} block in the policy section"
    return m.group(1)


def test_postgrey_greylists_then_accepts():
    if not shutil.which("postgrey"):
        raise AssertionError("postgrey is not installed (Debian package postgrey)")
    d = tmpdir()
    os.chmod(d, 0o755)  # postgrey drops to its own user
    db = os.path.join(d, "db")
    os.mkdir(db)
    shutil.chown(db, "postgrey", "postgrey")
    port = free_port()
    pg = taplib.spawn(["postgrey", f"--inet=127.0.0.1:{port}", f"--dbdir={db}", "--delay=2",
                       "--max-age=1", "--retry-window=1", "--hostname=test.example",
                       f"--pidfile={d}/pg.pid", "--auto-whitelist-clients=0",
                       "--whitelist-clients=/dev/null", "--whitelist-recipients=/dev/null"])
    taplib.wait_for_line(pg, "Binding to TCP port", timeout=20)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "postgrey does not listen"
            time.sleep(0.1)
    # the documented example, pointed at this postgrey
    block = docs_block("ini").replace("inet:127.0.0.1:10023", f"inet:127.0.0.1:{port}")
    assert f"inet:127.0.0.1:{port}" in block, block
    make_conf(d, block, docs_block("vsl"))
    args = ("--from", "alice@example.com", "--rcpt", "bob@example.org", "--client-ip", "192.0.2.7")
    report, _ = vpsctl_run(d, *args)
    s = stage(report, "rcpt")
    (r,) = results(report, "rcpt", "postgrey")
    assert r["fields"]["action"] == "DEFER_IF_PERMIT" and not r["error"], r
    assert s["verdict"] == "tempfail" and s["code"] == 450, s
    assert "Greylisted" in s["text"], s
    # too early: still deferred
    report, _ = vpsctl_run(d, *args)
    assert stage(report, "rcpt")["verdict"] == "tempfail"
    time.sleep(3)
    report, _ = vpsctl_run(d, *args)
    s = stage(report, "rcpt")
    (r,) = results(report, "rcpt", "postgrey")
    assert s["verdict"] == "continue" and not r["error"], (s, r)
    assert r["fields"]["action"] == "PREPEND", r
    hdrs = [m for m in report["modifications"] if m["op"] == "insert_header"]
    assert hdrs and hdrs[0]["name"] == "X-Greylist" and "postgrey" in hdrs[0]["value"], \
        report["modifications"]
    assert report["verdict"] == "accept", report["verdict"]
    # a loopback client is not asked at all (the rule of the example)
    report, _ = vpsctl_run(d, "--from", "x@example.com", "--rcpt", "bob@example.org")
    assert results(report, "rcpt", "postgrey") == []


# ---- policyd-spf --------------------------------------------------------------

SPF_ADAPTER = r'''
import os, socket, subprocess, sys
# policyd-spf speaks on stdin/stdout (Postfix runs it with spawn(8)): one
# process per connection, as spawn does.
port, dns_port, conf = int(sys.argv[1]), sys.argv[2], sys.argv[3]
wrapper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spfwrap.py")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    subprocess.Popen(["/usr/bin/python3", wrapper, dns_port, conf], stdin=c.fileno(),
                     stdout=c.fileno(), stderr=subprocess.DEVNULL)
    c.close()
'''

SPF_WRAPPER = r'''
import sys, DNS
# pydns (what python3-spf uses here) asks these instead of /etc/resolv.conf
DNS.defaults["server"] = ["127.0.0.1"]
DNS.defaults["port"] = int(sys.argv[1])
sys.argv = ["policyd-spf", sys.argv[2]]
from spf_engine.policyd_spf import main


sys.exit(main())
'''


def test_policyd_spf_with_local_dns():
    if not os.path.exists("/usr/bin/policyd-spf"):
        raise AssertionError("policyd-spf is not installed (postfix-policyd-spf-python)")
    if subprocess.run([PY, "-c", "import DNS, spf_engine"], capture_output=True).returncode:
        raise AssertionError("policyd-spf's DNS library (pydns) is missing: cannot point it "
                             "at the test DNS")
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    d = tmpdir()
    dns_port = free_port()
    dns = taplib.spawn([dnsmasq, "--keep-in-foreground", "--no-daemon", f"--port={dns_port}",
                        "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                        "--no-hosts", "--user=root", "--pid-file=", "--local=/test/",
                        '--txt-record=pass.test,v=spf1 ip4:192.0.2.10 -all',
                        '--txt-record=fail.test,v=spf1 -all', "--log-queries"])
    taplib.wait_for_line(dns, "started", timeout=10)
    write(os.path.join(d, "spfwrap.py"), SPF_WRAPPER)
    write(os.path.join(d, "adapter.py"), SPF_ADAPTER)
    write(os.path.join(d, "spf.conf"), "debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\n"
          "Mail_From_reject = Fail\nPermError_reject = False\nTempError_Defer = False\n"
          "skip_addresses = 127.0.0.0/8\n")
    port = free_port()
    ad = taplib.spawn([PY, os.path.join(d, "adapter.py"), str(port), str(dns_port),
                       os.path.join(d, "spf.conf")])
    taplib.wait_for_line(ad, "listening", timeout=10)
    make_conf(d, f"[connector spf]\ntype = policy\naddress = inet:127.0.0.1:{port}\n"
                 "timeout = 10s\n", 'rcpt { rule "spf" => call spf }\n')
    # pass: a Received-SPF header (policyd-spf answers with a lower-case "prepend")
    report, _ = vpsctl_run(d, "--from", "alice@pass.test", "--rcpt", "bob@example.org",
                           "--client-ip", "192.0.2.10", "--helo", "mx.pass.test")
    (r,) = results(report, "rcpt", "spf")
    assert not r["error"] and r["fields"]["action"] == "PREPEND", r
    hdrs = [m for m in report["modifications"] if m["op"] == "insert_header"]
    assert hdrs and hdrs[0]["name"] == "Received-SPF" and hdrs[0]["value"].startswith("Pass"), \
        report["modifications"]
    assert report["verdict"] == "accept"
    # fail: 550 5.7.23 straight from policyd-spf
    report, _ = vpsctl_run(d, "--from", "alice@fail.test", "--rcpt", "bob@example.org",
                           "--client-ip", "192.0.2.10", "--helo", "mx.fail.test")
    s = stage(report, "rcpt")
    assert (s["verdict"], s["code"], s["enhanced"]) == ("reject", 550, "5.7.23"), s
    assert "SPF fail" in s["text"], s


# ---- vpsd chained to vpsd -------------------------------------------------------

def test_vpsd_chained_to_vpsd():
    if not os.path.exists(os.path.join(SRC, "vps", "policy-server.c")):
        raise AssertionError("vps/policy-server.c (the policy front end) does not exist yet")
    # the second vpsd: a policy service with rules of its own
    d2 = tmpdir()
    port2 = free_port()
    conf2 = make_conf(d2, "", """
mail { rule "deny sender" when mail.from == "spammer@example.com" => reject 550 5.7.1 "Sender refused upstream" }
rcpt {
  rule "unknown" when rcpt.to == "nobody@example.org" => reject 550 5.1.1 "No such user upstream"
  rule "slow down" when rcpt.to == "later@example.org" => tempfail 451 4.7.1 "Later upstream"
  rule "stamp" => add_header "X-Upstream" "checked"
}
""", extra=f"[policy]\nlisten = inet:127.0.0.1:{port2}\n")
    _, log2 = start_vpsd(d2, conf2, "policy: listening on")
    # the first: vpsctl's engine (what vpsd runs) calling it through the connector
    d1 = tmpdir()
    make_conf(d1, policy_block(f"inet:127.0.0.1:{port2}", name="upstream"), """
mail { rule "m" => call upstream }
rcpt { rule "r" => call upstream }
""")
    report, _ = vpsctl_run(d1, "--from", "alice@example.com", "--rcpt", "bob@example.org",
                           "--rcpt", "nobody@example.org", "--rcpt", "later@example.org")
    assert stage(report, "rcpt", "bob@example.org")["verdict"] == "continue"
    s = stage(report, "rcpt", "nobody@example.org")
    assert (s["verdict"], s["code"], s["enhanced"], s["text"]) == \
        ("reject", 550, "5.1.1", "No such user upstream"), s
    s = stage(report, "rcpt", "later@example.org")
    assert (s["verdict"], s["code"], s["enhanced"], s["text"]) == \
        ("tempfail", 451, "4.7.1", "Later upstream"), s
    hdrs = [m for m in report["modifications"] if m["op"] == "insert_header"]
    assert ("X-Upstream", "checked") in [(m["name"], m["value"]) for m in hdrs], report
    report, _ = vpsctl_run(d1, "--from", "spammer@example.com", "--rcpt", "bob@example.org")
    s = stage(report, "mail")
    assert (s["verdict"], s["code"], s["text"]) == ("reject", 550, "Sender refused upstream"), s


run([test_attributes_sent_per_stage, test_every_action_kind, test_rules_read_action_and_text,
     test_slow_service_times_out_to_on_error, test_garbage_replies_give_on_error,
     test_connection_refused_retries_then_on_error, test_peer_closing_idle_connections_is_no_error,
     test_idle_timeout_closes_our_side, test_peer_dropping_a_reused_connection_mid_request_is_no_error,
     test_unix_socket_and_relative_path, test_config_errors,
     test_pool_limit_with_concurrent_sessions, test_postgrey_greylists_then_accepts,
     test_policyd_spf_with_local_dns, test_vpsd_chained_to_vpsd])
