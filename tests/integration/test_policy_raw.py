#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd's policy server against a peer that speaks the Postfix policy
delegation protocol itself (SMTPD_POLICY_README), written here from the
README and independent of proto/policy.

Covers: many requests over one connection and several in one write, in
order; the verdict -> action table; the session/transaction model of
policy-server.h (MAIL starts a transaction, the first instance adopts it, a
new instance or a new session's CONNECT ends it) and that nothing leaks
from one transaction to the next (`set` variables, connector results,
recipients, pending modifications, accept_all); stages that catch up when
the first request is a RCPT (smtpd_delay_reject = yes); repeats of one
request answered without running rules again; modifications the protocol
cannot express logged; the hostile requests of TESTING.md (a '=' or NUL in
a name, a 1 MB line, 10k attributes, no blank line then close), each
closing only its own connection; 200 concurrent connections; a unix socket
with no_opinion = accept and accept_action = dunno; the idle and request
timeouts."""
import os, signal, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from postfixlib import free_port, wait_listening

VPSD = os.environ["VPSD"]

RULES = r'''
connect {
  rule "blocked client" when client.ip == 192.0.2.66 => reject 554 5.7.1 "Client blocked"
  rule "trusted" when client.ip == 192.0.2.10 => accept_all
}
helo {
  rule "bad helo" when helo.name == "bad.helo" => reject 550 5.7.1 "Bad HELO"
}
auth {
  rule "auth seen" when auth.user == "alice" => set authed = "yes"
}
mail {
  rule "bad sender" when mail.from == "bad@example.com" => reject 550 5.7.1 "Bad sender"
  rule "mark" when mail.from == "mark@example.com" => set mark = "yes"
  rule "probe" when mail.from == "probe@example.com" => call probe
  rule "size" when mail.param("SIZE") == "12345" => reject 552 5.3.4 "Too big for us"
  rule "authed mail" when var.authed == "yes" and mail.from == "authcheck@example.com"
    => reject 550 5.7.1 "auth stage ran"
}
rcpt {
  rule "no such user" when rcpt.to == "nobody@example.org" => reject 550 5.1.1 "No such user"
  rule "later" when rcpt.to == "later@example.org" => tempfail 451 4.7.1 "Try later"
  rule "drop" when rcpt.to == "drop@example.org" => discard
  rule "hold" when rcpt.to == "hold@example.org" => quarantine "spam"
  rule "vip" when rcpt.to == "vip@example.org" => accept
  rule "leak var" when var.mark == "yes" => reject 550 5.7.1 "var leaked"
  rule "leak probe" when probe.seen => reject 550 5.7.1 "probe leaked"
  rule "count" when rcpt.count == 1 and rcpt.to == "count@example.org"
    => reject 550 5.7.1 "second recipient"
  rule "stamp" when rcpt.to == "stamp@example.org" => add_header "X-Stamp" "one",
    add_header "X-Stamp-Two" "two"
  rule "bcc" when rcpt.to == "bcc@example.org" => add_rcpt "archive@example.net"
  rule "rewrite" when rcpt.to == "rewrite@example.org" => set_header "Subject" "changed"
  rule "slow" when rcpt.to == "slow@example.org" => call slow
}
data {
  rule "huge" when message.size > 1000 => reject 552 5.3.4 "Message too big"
  rule "late header" when message.size == 77 => add_header "X-Late" "yes"
}
'''


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Vpsd:
    def __init__(self, listen=None, policy_extra="", rules=RULES):
        self.dir = tmpdir()
        self.port = free_port()
        self.listen = listen or f"inet:127.0.0.1:{self.port}"
        self.conf = os.path.join(self.dir, "vps.conf")
        self.log_path = os.path.join(self.dir, "vpsd.log")
        write(os.path.join(self.dir, "rules.vsl"), rules)
        write(self.conf, f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 2s
[policy]
listen = {self.listen}
{policy_extra}
[connector probe]
type = test
fields = seen=true
[connector slow]
type = test
delay = 30s
timeout = 60s
[quarantine]
dir = q
names = spam
[log]
target = stderr
level = info
""")
        self.proc = subprocess.Popen([VPSD, "-c", self.conf], stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        taplib._procs.append(self.proc)
        self.wait_log("policy: listening on")
        if self.listen.startswith("inet:"):
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

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


# ---- our own client side of the protocol -----------------------------------

_client_ports = iter(range(40000, 60000))


class Smtpd:
    """One policy connection as a Postfix smtpd uses it: requests of one
    SMTP session after the other, each with all the attributes Postfix 3.7
    sends (empty when unknown)."""

    def __init__(self, vpsd, timeout=10):
        if vpsd.listen.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(vpsd.listen[5:])
        else:
            self.sock = socket.create_connection(("127.0.0.1", vpsd.port), timeout=timeout)
        self.buf = b""
        self.new_session()

    def new_session(self, client="127.0.0.1"):
        self.base = {"client_address": client, "client_port": str(next(_client_ports)),
                     "client_name": "unknown", "reverse_client_name": "unknown",
                     "server_address": "127.0.0.1", "server_port": "25", "helo_name": "",
                     "sender": "", "recipient": "", "recipient_count": "0", "queue_id": "",
                     "instance": "", "size": "0", "sasl_method": "", "sasl_username": "",
                     "encryption_protocol": "", "encryption_cipher": ""}

    def encode(self, state, **attrs):
        a = {"request": "smtpd_access_policy", "protocol_state": state,
             "protocol_name": "ESMTP"}
        a.update(self.base)
        a.update(attrs)
        return "".join(f"{k}={v}\n" for k, v in a.items()).encode() + b"\n"

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        r, self.buf = self.buf.split(b"\n\n", 1)
        lines = r.decode().split("\n")
        assert len(lines) == 1 and lines[0].startswith("action="), lines
        return lines[0][len("action="):]

    def ask(self, state, **attrs):
        self.send(self.encode(state, **attrs))
        return self.reply()

    def closed(self, timeout=5):
        """True when vpsd closed the connection without answering."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        return data == b""

    def close(self):
        self.sock.close()

    # one whole transaction, delay_reject = no style
    def session_start(self, helo="client.example"):
        assert self.ask("CONNECT") == "DUNNO"
        r = self.ask("EHLO", helo_name=helo)
        self.base["helo_name"] = helo
        return r


def check_alive(vpsd):
    """A fresh connection still gets answers (nothing else was affected)."""
    c = Smtpd(vpsd)
    c.session_start()
    assert c.ask("MAIL", sender="ok@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="ok@example.com", recipient="nobody@example.org",
                 instance="alive.1") == "550 5.1.1 No such user"
    c.close()


V = None


def vpsd():
    global V
    if V is None:
        V = Vpsd()
    return V


# ---- tests -------------------------------------------------------------------


def test_many_requests_one_connection():
    c = Smtpd(vpsd())
    for i in range(50):
        c.new_session()
        c.session_start()
        assert c.ask("MAIL", sender=f"s{i}@example.com") == "DUNNO"
        inst = f"many.{i}"
        assert c.ask("RCPT", sender=f"s{i}@example.com", recipient="a@example.org",
                     instance=inst) == "DUNNO"
        assert c.ask("RCPT", sender=f"s{i}@example.com", recipient="nobody@example.org",
                     instance=inst) == "550 5.1.1 No such user"
        assert c.ask("DATA", sender=f"s{i}@example.com", recipient="a@example.org",
                     recipient_count="1", instance=inst) == "DUNNO"
        assert c.ask("END-OF-MESSAGE", sender=f"s{i}@example.com", recipient="a@example.org",
                     recipient_count="1", instance=inst, size="500") == "DUNNO"
    c.close()


def test_several_requests_in_one_write():
    c = Smtpd(vpsd())
    s = "x@example.com"
    batch = (c.encode("CONNECT") + c.encode("EHLO", helo_name="h.example")
             + c.encode("MAIL", helo_name="h.example", sender=s)
             + c.encode("RCPT", helo_name="h.example", sender=s, recipient="later@example.org",
                        instance="batch.1")
             + c.encode("RCPT", helo_name="h.example", sender=s, recipient="nobody@example.org",
                        instance="batch.1")
             + c.encode("RCPT", helo_name="h.example", sender=s, recipient="vip@example.org",
                        instance="batch.1"))
    c.send(batch)
    got = [c.reply() for _ in range(6)]
    assert got == ["DUNNO", "DUNNO", "DUNNO", "451 4.7.1 Try later", "550 5.1.1 No such user",
                   "OK"], got
    c.close()


def test_verdict_actions():
    c = Smtpd(vpsd())
    c.session_start()
    s = "v@example.com"
    assert c.ask("MAIL", sender=s) == "DUNNO"
    cases = [("nobody@example.org", "550 5.1.1 No such user"),
             ("later@example.org", "451 4.7.1 Try later"),
             ("vip@example.org", "OK"),
             ("plain@example.org", "DUNNO"),
             ("drop@example.org", 'DISCARD drop'),
             ("hold@example.org", "HOLD quarantine spam")]
    for rcpt, want in cases:
        got = c.ask("RCPT", sender=s, recipient=rcpt, instance="verdicts.1")
        assert got == want, (rcpt, got, want)
    # a refusing verdict before RCPT: MAIL and HELO
    assert c.ask("MAIL", sender="bad@example.com") == "550 5.7.1 Bad sender"
    assert c.ask("MAIL", sender="big@example.com", size="12345") == "552 5.3.4 Too big for us"
    c.new_session()
    assert c.ask("CONNECT") == "DUNNO"
    assert c.ask("HELO", helo_name="bad.helo") == "550 5.7.1 Bad HELO"
    # END-OF-MESSAGE runs data with the size
    c.new_session()
    c.session_start()
    assert c.ask("MAIL", sender=s) == "DUNNO"
    assert c.ask("RCPT", sender=s, recipient="a@example.org", instance="eom.1") == "DUNNO"
    assert c.ask("END-OF-MESSAGE", sender=s, recipient="a@example.org", instance="eom.1",
                 recipient_count="1", size="5000") == "552 5.3.4 Message too big"
    # VRFY / ETRN: no opinion
    assert c.ask("VRFY", recipient="a@example.org") == "DUNNO"
    assert c.ask("ETRN", etrn_domain="example.org") == "DUNNO"
    c.close()


def test_accept_all_session_does_not_leak():
    c = Smtpd(vpsd())
    c.new_session(client="192.0.2.10")
    assert c.ask("CONNECT") == "OK"
    assert c.ask("MAIL", sender="bad@example.com") == "OK"  # accept_all covers it
    assert c.ask("RCPT", sender="bad@example.com", recipient="nobody@example.org",
                 instance="aa.1") == "OK"
    # the next SMTP session of the same smtpd, over the same connection
    c.new_session(client="127.0.0.1")
    assert c.ask("CONNECT") == "DUNNO"
    assert c.ask("MAIL", sender="bad@example.com") == "550 5.7.1 Bad sender"
    c.close()


def test_transaction_state_does_not_leak():
    c = Smtpd(vpsd())
    c.session_start()
    # transaction 1: `set mark`, connector probe called, a recipient accepted
    assert c.ask("MAIL", sender="mark@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="mark@example.com", recipient="a@example.org",
                 instance="leak.1") == "550 5.7.1 var leaked"  # the var is seen in its txn
    # transaction 2 (new MAIL, then its instance): none of it is visible
    assert c.ask("MAIL", sender="clean@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="clean@example.com", recipient="a@example.org",
                 instance="leak.2") == "DUNNO"
    # connector results
    assert c.ask("MAIL", sender="probe@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="probe@example.com", recipient="a@example.org",
                 instance="leak.3") == "550 5.7.1 probe leaked"
    assert c.ask("MAIL", sender="clean2@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="clean2@example.com", recipient="a@example.org",
                 instance="leak.4") == "DUNNO"
    # recipients: rcpt.count counts this transaction's only
    assert c.ask("RCPT", sender="clean2@example.com", recipient="count@example.org",
                 instance="leak.4") == "550 5.7.1 second recipient"
    assert c.ask("MAIL", sender="clean3@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="clean3@example.com", recipient="count@example.org",
                 instance="leak.5") == "DUNNO"
    # a new instance without a MAIL request ends the transaction too
    assert c.ask("RCPT", sender="mark@example.com", recipient="a@example.org",
                 instance="leak.6") == "550 5.7.1 var leaked"  # mail caught up: var set
    assert c.ask("RCPT", sender="clean4@example.com", recipient="a@example.org",
                 instance="leak.7") == "DUNNO"
    # pending modifications: two headers in leak.8, only one slot, the other
    # is dropped (and logged) when leak.9 begins, never sent there
    assert c.ask("RCPT", sender="s@example.com", recipient="stamp@example.org",
                 instance="leak.8") == "PREPEND X-Stamp: one"
    assert c.ask("RCPT", sender="s@example.com", recipient="a@example.org",
                 instance="leak.9") == "DUNNO"
    vpsd().wait_log('rule "stamp": add_header X-Stamp-Two not applied')
    c.close()


def test_instance_adopts_mail_transaction():
    c = Smtpd(vpsd())
    c.session_start()
    # MAIL has no instance; the first RCPT's instance adopts MAIL's txn:
    # the var set at mail is visible at rcpt
    assert c.ask("MAIL", sender="mark@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="mark@example.com", recipient="a@example.org",
                 instance="adopt.1") == "550 5.7.1 var leaked"
    # the same instance again: still the same transaction
    assert c.ask("RCPT", sender="mark@example.com", recipient="b@example.org",
                 instance="adopt.1") == "550 5.7.1 var leaked"
    # EHLO ends it (RFC 5321: EHLO resets the transaction)
    assert c.ask("EHLO", helo_name="client.example") == "DUNNO"
    assert c.ask("RCPT", sender="other@example.com", recipient="a@example.org",
                 instance="adopt.2") == "DUNNO"
    c.close()


def test_catch_up_when_first_request_is_rcpt():
    # smtpd_delay_reject = yes: client/helo/sender checks happen at RCPT
    c = Smtpd(vpsd())
    c.new_session(client="192.0.2.66")
    assert c.ask("RCPT", helo_name="h", sender="a@example.com", recipient="a@example.org",
                 instance="cu.1") == "554 5.7.1 Client blocked"
    c.new_session()
    assert c.ask("RCPT", helo_name="bad.helo", sender="a@example.com", recipient="a@example.org",
                 instance="cu.2") == "550 5.7.1 Bad HELO"
    c.new_session()
    assert c.ask("RCPT", helo_name="h", sender="bad@example.com", recipient="a@example.org",
                 instance="cu.3") == "550 5.7.1 Bad sender"
    # auth runs before mail when sasl_username is set
    c.new_session()
    assert c.ask("RCPT", helo_name="h", sender="authcheck@example.com", recipient="a@example.org",
                 instance="cu.4", sasl_method="PLAIN",
                 sasl_username="alice") == "550 5.7.1 auth stage ran"
    c.close()


def test_repeats_run_rules_once():
    # Postfix sends the same RCPT request once per restriction list that
    # lists the service; the second recipient must be the second one
    c = Smtpd(vpsd())
    c.session_start()
    assert c.ask("MAIL", sender="r@example.com") == "DUNNO"
    for _ in range(4):
        assert c.ask("RCPT", sender="r@example.com", recipient="a@example.org",
                     instance="rep.1") == "DUNNO"
    for _ in range(3):
        assert c.ask("RCPT", sender="r@example.com", recipient="count@example.org",
                     instance="rep.1") == "550 5.7.1 second recipient"
    # modifications use the repeats' reply slots, once each
    got = [c.ask("RCPT", sender="r@example.com", recipient="stamp@example.org",
                 instance="rep.1") for _ in range(4)]
    assert got == ["PREPEND X-Stamp: one", "PREPEND X-Stamp-Two: two", "DUNNO", "DUNNO"], got
    c.close()


def test_modifications_mapping():
    v = vpsd()
    c = Smtpd(v)
    c.session_start()
    assert c.ask("MAIL", sender="m@example.com") == "DUNNO"
    assert c.ask("RCPT", sender="m@example.com", recipient="bcc@example.org",
                 instance="mod.1") == "BCC archive@example.net"
    # only one BCC per transaction (Postfix keeps the last): logged
    assert c.ask("RCPT", sender="m@example.com", recipient="bcc@example.org",
                 instance="mod.1", queue_id="Q1") == "DUNNO"
    v.wait_log('rule "bcc": add_rcpt archive@example.net not applied: Postfix keeps one BCC')
    # set_header cannot be expressed: logged once per rule
    assert c.ask("RCPT", sender="m@example.com", recipient="rewrite@example.org",
                 instance="mod.1") == "DUNNO"
    v.wait_log('rule "rewrite": set_header Subject not applied: the policy protocol cannot')
    assert c.ask("RCPT", sender="m@example.com", recipient="rewrite@example.org",
                 instance="mod.1", queue_id="Q2") == "DUNNO"
    time.sleep(0.2)
    assert len([l for l in v.log().splitlines() if 'rule "rewrite": set_header' in l]) == 1
    # PREPEND cannot execute at END-OF-MESSAGE: logged, DUNNO sent
    assert c.ask("END-OF-MESSAGE", sender="m@example.com", instance="mod.1",
                 recipient_count="3", size="77") == "DUNNO"
    v.wait_log('rule "late header": add_header X-Late not applied: PREPEND cannot execute')
    c.close()


def hostile(payload, close_after=False):
    v = vpsd()
    before = v.log().count("policy: closing connection")
    c = Smtpd(v)
    c.session_start()
    try:
        c.send(payload)
        if close_after:
            c.sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # vpsd closed while we were still writing: that is the point
    assert c.closed(), "vpsd answered a hostile request"
    lines = v.wait_log("policy: closing connection", count=before + 1)
    check_alive(v)
    return lines[-1]


def test_hostile_equals_in_name():
    line = hostile(b"request=smtpd_access_policy\n=protocol_state=RCPT\n\n")
    assert "bad request" in line, line


def test_hostile_bad_name_char():
    line = hostile(b"request=smtpd_access_policy\nprotocol state=RCPT\n\n")
    assert "bad request" in line, line


def test_hostile_nul_in_name():
    line = hostile(b"request=smtpd_access_policy\nproto\0col_state=RCPT\n\n")
    assert "bad request" in line, line


def test_hostile_1mb_line():
    line = hostile(b"request=smtpd_access_policy\nsender=" + b"a" * (1 << 20) + b"\n\n")
    assert "bad request" in line, line


def test_hostile_10k_attributes():
    line = hostile(b"".join(b"attr%d=x\n" % i for i in range(10000)) + b"\n")
    assert "bad request" in line, line


def test_hostile_no_blank_line_then_close():
    line = hostile(b"request=smtpd_access_policy\nprotocol_state=RCPT\n", close_after=True)
    assert "end of stream" in line, line


def test_200_concurrent_connections():
    v = vpsd()
    errors = []

    def one(i):
        try:
            c = Smtpd(v, timeout=30)
            c.session_start()
            s = f"c{i}@example.com"
            assert c.ask("MAIL", sender=s) == "DUNNO"
            inst = f"conc.{i}"
            assert c.ask("RCPT", sender=s, recipient="a@example.org", instance=inst) == "DUNNO"
            assert c.ask("RCPT", sender=s, recipient="nobody@example.org",
                         instance=inst) == "550 5.1.1 No such user"
            c.close()
        except Exception as e:
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


def test_unix_socket_and_no_opinion_settings():
    d = tmpdir()
    v = Vpsd(listen=f"unix:{d}/policy.sock",
             policy_extra="no_opinion = accept\naccept_action = dunno\n")
    try:
        c = Smtpd(v)
        assert c.ask("CONNECT") == "OK"  # continue -> no_opinion = accept -> OK
        assert c.ask("MAIL", sender="u@example.com") == "OK"
        assert c.ask("RCPT", sender="u@example.com", recipient="vip@example.org",
                     instance="unix.1") == "DUNNO"  # accept -> accept_action = dunno
        assert c.ask("RCPT", sender="u@example.com", recipient="nobody@example.org",
                     instance="unix.1") == "550 5.1.1 No such user"
        c.close()
    finally:
        v.stop()


def test_idle_and_request_timeouts():
    v = Vpsd(policy_extra="timeout = 1s\nrequest_timeout = 1s\n")
    try:
        c = Smtpd(v)
        c.session_start()
        t0 = time.time()
        assert c.closed(timeout=5), "idle connection not closed"
        assert 0.9 <= time.time() - t0 < 4, time.time() - t0
        v.wait_log("policy: closing idle connection")
        # a slow connector: answered with a temporary failure at request_timeout
        c = Smtpd(v)
        c.session_start()
        assert c.ask("MAIL", sender="s@example.com") == "DUNNO"
        t0 = time.time()
        got = c.ask("RCPT", sender="s@example.com", recipient="slow@example.org",
                    instance="slow.1")
        assert got.startswith("4") and got[3] == " ", got
        assert time.time() - t0 < 5, time.time() - t0
        v.wait_log("policy: request timeout after 1000ms")
        # the connection goes on
        assert c.ask("RCPT", sender="s@example.com", recipient="nobody@example.org",
                     instance="slow.1") == "550 5.1.1 No such user"
        c.close()
    finally:
        v.stop()


if __name__ == "__main__":
    run([test_many_requests_one_connection, test_several_requests_in_one_write,
         test_verdict_actions, test_accept_all_session_does_not_leak,
         test_transaction_state_does_not_leak, test_instance_adopts_mail_transaction,
         test_catch_up_when_first_request_is_rcpt, test_repeats_run_rules_once,
         test_modifications_mapping, test_hostile_equals_in_name, test_hostile_bad_name_char,
         test_hostile_nul_in_name, test_hostile_1mb_line, test_hostile_10k_attributes,
         test_hostile_no_blank_line_then_close, test_200_concurrent_connections,
         test_unix_socket_and_no_opinion_settings, test_idle_and_request_timeouts])
