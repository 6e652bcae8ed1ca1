#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd's milter server driven by miltertest (the Lua-scripted MTA side of
the OpenDKIM project): negotiation (versions 6 and 2), each stage's reply,
every modification, quarantine, discard, accept_all, ABORT and a second
message on the same connection.  The scripts live in miltertest/*.lua."""
import os, shutil, socket, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, spawn, tmpdir, wait_for_line

VPSD = os.environ["VPSD"]
HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "miltertest")
MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"

# One rule file for every script: the sender (or client, helo) picks the
# behaviour under test.
RULES = r'''
connect {
  rule "c-reject" when client.ip == 192.0.2.66 => reject 554 5.7.1 "Connect refused"
  rule "c-all"    when client.ip == 192.0.2.77 => accept_all
}
helo { rule "h-reject" when helo.name == "evil.example" => reject 550 5.7.1 "Bad HELO" }
mail {
  rule "m-reject"   when mail.from == "bad@example.com" => reject 550 5.1.8 "Bad sender"
  rule "m-tempfail" when mail.from == "tmp@example.com" => tempfail 451 4.7.1 "Try later"
}
rcpt { rule "r-reject" when rcpt.to == "nobody@example.org" => reject 550 5.1.1 "No such user" }
data {
  rule "d-reject"  when mail.from == "spam@example.com" => reject 550 5.7.1 "Spam here"
  rule "d-subject" when subject =~ /viagra/i => reject 554 5.7.1 "No pills"
  rule "d-discard" when mail.from == "discard@example.com" => discard
  rule "d-quarantine" when mail.from == "quarantine@example.com" => quarantine "spam"
  rule "d-all"     when mail.from == "all@example.com" => accept_all
  rule "d-mods" when mail.from == "mods@example.com"
    => add_header "X-Added" "added", insert_header "X-Top" "top",
       set_header "Subject" "changed", remove_header "X-Remove",
       set_sender "<new@example.com>", add_rcpt "added@example.org",
       remove_rcpt "bob@example.org", replace_body "new body\n"
  rule "d-first" when mail.from == "first@example.com" => set_header "From" "changed@example.com"
  rule "stamp" => add_header "X-Scanned" "vps"
}
'''

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

class Vpsd:
    def __init__(self, rules=RULES, extra=""):
        self.dir = tmpdir()
        self.port = free_port()
        write(os.path.join(self.dir, "rules.vsl"), rules)
        write(os.path.join(self.dir, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 2s
[milter]
listen = inet:127.0.0.1:{self.port}
{extra}
[log]
level = info
[quarantine]
dir = q
names = spam
""")
        self.proc = spawn([VPSD, "-c", os.path.join(self.dir, "vps.conf")], bufsize=0)
        wait_for_line(self.proc, "milter: listening on")

    def lua(self, script):
        """Run one script; it must exit 0 and print PASS."""
        p = subprocess.run([MILTERTEST, "-D", f"port={self.port}", "-D", f"libdir={LUA}",
                            "-s", os.path.join(LUA, script)],
                           capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        assert p.returncode == 0 and "PASS" in p.stdout, \
            f"{script}: exit {p.returncode}: {out}"
        return out

_vpsd = None

def vpsd():
    global _vpsd
    if _vpsd is None:
        _vpsd = Vpsd()
    return _vpsd

def test_negotiate_v6():
    vpsd().lua("negotiate_v6.lua")

def test_negotiate_v2():
    vpsd().lua("negotiate_v2.lua")

def test_stage_replies():
    vpsd().lua("replies.lua")

def test_modifications():
    vpsd().lua("modify.lua")

def test_first_header_change():
    vpsd().lua("first_header.lua")

def test_quarantine_discard_accept_all():
    v = vpsd()
    v.lua("verdicts.lua")
    # the quarantined message is also in the vps quarantine store
    qdir = os.path.join(v.dir, "q", "spam")
    files = os.listdir(qdir) if os.path.isdir(qdir) else []
    assert any(f.endswith(".eml") for f in files), f"no .eml in {qdir}: {files}"

def test_abort_then_second_message():
    vpsd().lua("abort.lua")

def test_minimal_rules_negotiate_little():
    # Only a rcpt rule: CONNECT/HELO/MAIL and content switched off;
    # DATA still answered.
    v = Vpsd(rules='rcpt { rule "r" when rcpt.domain == "blocked.example" => reject }\n',
             extra="store_quarantine = false")  # in [milter]
    v.lua("minimal.lua")

run([test_negotiate_v6, test_negotiate_v2, test_stage_replies, test_modifications,
     test_first_header_change, test_quarantine_discard_accept_all,
     test_abort_then_second_message, test_minimal_rules_negotiate_little])
