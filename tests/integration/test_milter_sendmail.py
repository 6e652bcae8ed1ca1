#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd as the milter of a real Sendmail (8.17, sandboxed by sendmaillib),
configured with the sendmail.mc lines of docs/sendmail.md (read from the
document; only the port differs): a recipient refused with the rule's
reply while the other goes on, a data-stage reject with its text, headers
added and changed with the macros vps reads, a quarantine (Sendmail's
quarantine queue, `-bp -qQ`, and the vps store), a discard.  swaks sends,
smtp-sink receives.  When Sendmail cannot be fetched or unpacked here
(SendmailUnavailable) the plan is a TAP SKIP with the reason."""
import json, os, re, signal, subprocess, sys, time, uuid

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from postfixlib import (SmtpSink, free_port, swaks, replies, eod_reply, rcpt_reply,
                        wait_listening)
from sendmaillib import Sendmail, SendmailUnavailable, ensure_dist

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]
DOC = os.path.join(SRC, "docs", "sendmail.md")
DOC_PORT = "10030"  # the port docs/sendmail.md writes

# ---- docs/sendmail.md -----------------------------------------------------------


def doc_mc_lines():
    """The sendmail.mc lines of docs/sendmail.md: the first ```m4 block
    with INPUT_MAIL_FILTER, its lines without comments."""
    out, cur = [], None
    for line in open(DOC, encoding="utf-8"):
        if cur is None and line.strip() == "```m4":
            cur = []
        elif cur is not None and line.strip() == "```":
            if any(l.startswith("INPUT_MAIL_FILTER(") for l in cur):
                return cur
            cur = None
        elif cur is not None and line.strip() and not line.startswith("dnl #"):
            cur.append(line.strip())
    raise AssertionError("docs/sendmail.md has no ```m4 block with INPUT_MAIL_FILTER")


def doc_milter(port):
    """(milters, milter_macros) for sendmaillib.Sendmail from the doc's
    lines, the socket's port replaced by port."""
    milters, macros = [], {}
    for line in doc_mc_lines():
        line = line.replace(f"inet:{DOC_PORT}@", f"inet:{port}@")
        m = re.fullmatch(r"INPUT_MAIL_FILTER\(`([^']+)', `([^']+)'\)dnl", line)
        if m:
            equates = [e.strip() for e in m.group(2).split(", ")]
            assert equates[0].startswith("S="), line
            milters.append((m.group(1), equates[0][2:], *equates[1:]))
            continue
        m = re.fullmatch(r"define\(`confMILTER_MACROS_([A-Z]+)', `([^']*)'\)dnl", line)
        assert m, f"docs/sendmail.md: unexpected line {line!r}"
        macros[m.group(1).lower()] = m.group(2)
    assert len(milters) == 1, milters
    return milters, macros


# ---- vpsd (its log in a file) ----------------------------------------------------


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Vpsd:
    def __init__(self):
        self.dir = tmpdir()
        self.port = free_port()
        self.conf = os.path.join(self.dir, "vps.conf")
        self.rules_path = os.path.join(self.dir, "rules.vsl")
        self.log_path = os.path.join(self.dir, "vpsd.log")
        self.rules = 'connect { rule "nothing" when client.port == 0 => continue }\n'
        write(self.rules_path, self.rules)
        write(self.conf, f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 2s
[milter]
listen = inet:127.0.0.1:{self.port}
[log]
target = stderr
level = info
[quarantine]
dir = q
names = spam
""")
        self.proc = subprocess.Popen([VPSD, "-c", self.conf], stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        taplib._procs.append(self.proc)
        self.wait_log("milter: listening on")
        wait_listening(self.port)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, needle, timeout=10, count=1):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"vpsd exited {self.proc.returncode}: {self.log()[-3000:]}")
            hits = [l for l in self.log().splitlines() if needle in l]
            if len(hits) >= count:
                return hits
            if time.time() >= deadline:
                raise AssertionError(f"vpsd log: {count}x {needle!r} not seen in {timeout}s; "
                                     f"tail:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def set_rules(self, text):
        """Install a rule file (SIGHUP) unless it is the one loaded."""
        if text == self.rules:
            return
        before = self.log().count("SIGHUP: reloading")
        write(self.rules_path, text)
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("SIGHUP: reloading", count=before + 1)
        deadline = time.time() + 10
        while True:
            tail = self.log().split("SIGHUP: reloading")[before + 1]
            if " reloaded " in tail:
                break
            assert "reload refused" not in tail, f"rules refused: {tail}\n{text}"
            assert time.time() < deadline, f"no reload outcome logged: {tail}"
            time.sleep(0.02)
        self.rules = text

    def ctl(self, *args):
        p = subprocess.run([VPSCTL, "-c", self.conf, *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, f"vpsctl {args} exited {p.returncode}: {p.stderr}"
        return p.stdout


_env = {}


def env():
    """(vpsd, sendmail, sink), started once for every test."""
    if not _env:
        v = Vpsd()
        d = tmpdir()
        os.makedirs(os.path.join(d, "sink"))
        sink = SmtpSink(os.path.join(d, "sink")).start()
        milters, macros = doc_milter(v.port)
        sm = Sendmail(os.path.join(d, "sm"), smart_host=("127.0.0.1", sink.port),
                      milters=milters, milter_macros=macros).start()
        _env.update(vpsd=v, sm=sm, sink=sink)
    return _env["vpsd"], _env["sm"], _env["sink"]


def send(rules=None, **kw):
    v, sm, _ = env()
    if rules is not None:
        v.set_rules(rules)
    token = uuid.uuid4().hex[:12]
    kw.setdefault("from_", "alice@example.com")
    kw.setdefault("to", "bob@example.org")
    kw.setdefault("h_Subject", f"t {token}")
    kw.setdefault("body", f"body line {token}")
    rc, t = swaks(sm.port, **kw)
    return rc, t, token


def queue_id(transcript):
    """The id in Sendmail's "250 2.0.0 ID Message accepted for delivery"."""
    code, text = eod_reply(transcript)
    assert code == 250 and "Message accepted for delivery" in text, transcript
    return text.split()[2]


def delivered(token, timeout=20):
    _, _, sink = env()
    deadline = time.time() + timeout
    while True:
        for m in sink.messages():
            if token in m.message:
                return m
        if time.time() >= deadline:
            raise AssertionError(f"no message with {token} at the sink in {timeout}s")
        time.sleep(0.05)


# ---- tests -------------------------------------------------------------------------


def test_docs_mc_lines_are_what_sendmail_runs():
    v, sm, _ = env()
    mc = open(sm.mc_path).read().splitlines()
    for line in doc_mc_lines():
        line = line.replace(f"inet:{DOC_PORT}@", f"inet:{v.port}@")
        assert line in mc, f"{line!r} not in the generated sendmail.mc:\n" + "\n".join(mc)
    # Sendmail connected and vpsd negotiated with it (version 6, its offer)
    rc, t, token = send()
    assert rc == 0, t
    delivered(token)
    assert "offer=6/0x1ff/0x1fffff" in v.wait_log("negotiated")[-1]
    assert "error connecting to filter" not in sm.log(), sm.log()


def test_rcpt_reject_one_of_two():
    rules = ('rcpt { rule "r" when rcpt.to == "nobody@example.org" '
             '=> reject 550 5.1.1 "No such user here" }\n')
    rc, t, token = send(rules, to="nobody@example.org,bob@example.org")
    assert rc == 0, t
    got = replies(t, "RCPT TO")
    # code, enhanced code and text as the rule wrote them; Sendmail puts
    # the address in front of a RCPT reply's text
    assert got[0] == (550, "550 5.1.1 <nobody@example.org>... No such user here"), t
    assert got[1][0] == 250, t
    m = delivered(token)
    assert m.rcpts == ["bob@example.org"], m.rcpt_args
    _, sm, _ = env()
    sm.wait_log(r"Milter: to=<nobody@example\.org>, reject=550 5\.1\.1 No such user here")


def test_data_reject_with_text():
    rules = 'data { rule "d" when subject =~ /viagra/i => reject 554 5.7.1 "No pills, 100% sure" }\n'
    rc, t, _ = send(rules, h_Subject="cheap viagra")
    assert rc != 0, t
    assert eod_reply(t) == (554, "554 5.7.1 No pills, 100% sure"), t
    _, sm, sink = env()
    # (Sendmail logs the text as it came on the wire: '%' doubled)
    sm.wait_log(r"Milter: data, reject=554 5\.7\.1 No pills, 100%% sure")


def test_headers_added_and_changed_with_macros():
    rules = '''
data {
  rule "h" when header("X-Case") == "edits"
    => add_header "X-Added" "added by vps",
       add_header "X-Qid" macro("i"),
       add_header "X-Server" server.name + " " + server.port,
       set_header "Subject" "changed subject",
       remove_header "X-Remove"
}
'''
    v, sm, _ = env()
    rc, t, token = send(rules, add_header=["X-Case: edits", "X-Remove: gone"])
    assert rc == 0, t
    qid = queue_id(t)
    m = delivered(token)
    assert m.header("X-Added") == "added by vps", m.headers
    # i (the queue id, Sendmail has it from MAIL on), j and {daemon_port}
    assert m.header("X-Qid") == qid, m.headers
    assert m.header("X-Server") == f"{sm.hostname} {sm.port}", m.headers
    assert m.header_all("Subject") == ["changed subject"], m.headers
    assert m.header_all("X-Remove") == [], m.headers
    assert "X-Added: added by vps\n" in m.headers, m.headers


def test_quarantine():
    v, sm, sink = env()
    rules = 'data { rule "q" when subject =~ /^quarantine/ => quarantine "spam" }\n'
    subject = f"quarantine {uuid.uuid4().hex[:6]}"
    rc, t, token = send(rules, h_Subject=subject)
    assert rc == 0, t  # Sendmail answers 250, then keeps the message aside
    qid = queue_id(t)
    reason = sm.wait_log(rf"{qid}: milter=vps, quarantine=")[0].split("quarantine=", 1)[1]
    assert reason.startswith("spam"), reason  # the rule's quarantine name
    assert sm.quarantine_reason(qid) == reason
    sm.wait_log(rf"{qid}: to=<bob@example\.org>,.*stat=quarantined")
    assert qid in sm.quarantined_ids() and qid not in sm.queue_ids()
    listing = sm.mailq(quarantined=True)
    assert qid in listing and f"QUARANTINE: {reason}" in listing, listing
    assert qid not in sm.mailq()
    # the vps store has its copy too
    entries = json.loads(v.ctl("quarantine", "list", "--json"))
    mine = [e for e in entries if e.get("subject") == subject]
    assert len(mine) == 1 and mine[0]["name"] == "spam", entries
    raw = subprocess.run([VPSCTL, "-c", v.conf, "quarantine", "show", mine[0]["id"], "--format",
                          "raw"], capture_output=True, timeout=30).stdout
    assert f"body line {token}".encode() in raw, raw
    assert not any(token in m.message for m in sink.messages())
    # released, the next queue run delivers it
    sm.quarantine(qid, "")
    sm.run_queue()
    assert f"body line {token}" in delivered(token).body


def test_discard():
    v, sm, sink = env()
    rules = 'data { rule "d" when subject =~ /^discard/ => discard }\n'
    rc, t, token = send(rules, h_Subject="discard this")
    assert rc == 0, t  # looks like success
    qid = queue_id(t)
    sm.wait_log(rf"{qid}: Milter: data, discard")
    sm.wait_queue_empty()
    assert qid not in sm.quarantined_ids()
    time.sleep(0.5)
    assert not any(token in m.message for m in sink.messages())


def teardown():
    if _env:
        _env["sm"].stop()
        _env["sink"].stop()


try:
    ensure_dist()
except SendmailUnavailable as e:
    print(f"1..0 # SKIP {e}", flush=True)
    sys.exit(0)

try:
    run([test_docs_mc_lines_are_what_sendmail_runs, test_rcpt_reject_one_of_two,
         test_data_reject_with_text, test_headers_added_and_changed_with_macros, test_quarantine,
         test_discard])
finally:
    teardown()
