#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd's milter server against a peer that speaks milter bytes itself.

The encoder and decoder here are written from MILTER.md on purpose,
independent of proto/milter: version 2 negotiation; the hostile packets of
TESTING.md (length 0, 0x80000000, over the limit, truncated, unknown
command, strings without NUL, odd macro lists, out of order), each closing
only its own connection while a well-behaved session on the same vpsd keeps
working; an idle session timing out; progress packets while a slow
connector works; 200 concurrent sessions; a reload that leaves sessions in
flight on their rules; the drain on SIGTERM."""
import os, signal, socket, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir

VPSD = os.environ["VPSD"]

RULES = '''
connect { rule "c" when client.ip == 192.0.2.66 => reject 554 5.7.1 "Connect refused" }
rcpt { rule "r" when rcpt.to == "nobody@example.org" => reject 550 5.1.1 "No such user" }
data {
  rule "slow" when header("Subject") == "slow" => call slow
  rule "stamp" => add_header "X-Scanned" "vps"
}
'''

# ---- our own milter encoder / decoder (MTA side) ----------------------------

def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data

def z(s):
    return s.encode() + b"\0"

def optneg(version=6, actions=0x1FF, protocol=0x1FFFFF):
    return pkt(b"O", struct.pack(">III", version, actions, protocol))

def connect_pkt(ip="192.0.2.1", port=4242, host="client.example"):
    return pkt(b"C", z(host) + b"4" + struct.pack(">H", port) + z(ip))

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf

def read_packet(sock):
    (n,) = struct.unpack(">I", recv_exact(sock, 4))
    assert 1 <= n <= 1 << 20, n
    data = recv_exact(sock, n)
    return data[:1], data[1:]

class Mta:
    """One milter connection, MTA side (port: TCP on 127.0.0.1; a str: a unix socket)."""
    def __init__(self, port, timeout=10):
        if isinstance(port, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opts = None

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        return read_packet(self.sock)

    def negotiate(self, version=6, actions=0x1FF, protocol=0x1FFFFF):
        self.send(optneg(version, actions, protocol))
        cmd, data = self.reply()
        assert cmd == b"O", (cmd, data)
        self.opts = struct.unpack(">III", data[:12])
        return self.opts

    def expects(self, nr_bit, no_bit=0):
        return not (self.opts[2] & nr_bit) and not (self.opts[2] & no_bit)

    def step(self, data, nr_bit, no_bit):
        """Send a step unless negotiated away; return its reply or None."""
        if self.opts[2] & no_bit:
            return None
        self.send(data)
        if self.opts[2] & nr_bit:
            return None
        return self.reply()

    def message(self, subject="hello", rcpt="bob@example.org", sender="alice@example.com"):
        """One whole message; returns the packets answering EOB."""
        r = self.step(connect_pkt(), 0x1000, 0x1)
        assert r is None or r[0] == b"c", r
        r = self.step(pkt(b"H", z("client.example")), 0x2000, 0x2)
        assert r is None or r[0] == b"c", r
        return self.message_only(subject, rcpt, sender)

    def message_only(self, subject="hello", rcpt="bob@example.org", sender="alice@example.com"):
        self.send(pkt(b"D", b"M" + z("i") + z("QID1")))
        r = self.step(pkt(b"M", z(f"<{sender}>") + z("SIZE=100")), 0x4000, 0x4)
        assert r is None or r[0] == b"c", r
        r = self.step(pkt(b"R", z(f"<{rcpt}>")), 0x8000, 0x8)
        assert r is None or r[0] == b"c", r
        if self.opts[0] >= 4:
            r = self.step(pkt(b"T"), 0x10000, 0x200)
            assert r is None or r[0] == b"c", r
        for name, value in (("From", " alice@example.com"), ("Subject", " " + subject)):
            if not self.opts[2] & 0x100000:
                value = value[1:]
            r = self.step(pkt(b"L", z(name) + z(value)), 0x80, 0x20)
            assert r is None or r[0] == b"c", r
        r = self.step(pkt(b"N"), 0x40000, 0x40)
        assert r is None or r[0] == b"c", r
        r = self.step(pkt(b"B", b"Hello\r\n"), 0x80000, 0x10)
        assert r is None or r[0] == b"c", r
        self.send(pkt(b"E"))
        out = []
        while True:
            cmd, data = self.reply()
            out.append((cmd, data))
            if cmd in (b"c", b"a", b"r", b"t", b"d", b"y"):
                return out

    def closed_within(self, seconds):
        """True if vpsd closes the connection within `seconds`."""
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()

# ---- vpsd --------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

_vpsd = {}

def vpsd():
    if "port" in _vpsd:
        return _vpsd["port"], _vpsd["proc"]
    d = tmpdir()
    port = free_port()
    with open(os.path.join(d, "rules.vsl"), "w") as f:
        f.write(RULES)
    with open(os.path.join(d, "vps.conf"), "w") as f:
        f.write(f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 2s
[milter]
listen = inet:127.0.0.1:{port}
connect_timeout = 2s
command_timeout = 2s
idle_timeout = 2s
content_timeout = 30s
progress_interval = 1s
[connector slow]
type = test
delay = 3s
[log]
level = info
[quarantine]
dir = q
""")
    # The log goes to a file: hundreds of sessions log more than a pipe
    # holds, and nobody reads the pipe while a test talks to vpsd.
    log = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", os.path.join(d, "vps.conf")],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    taplib._procs.append(proc)
    _vpsd.update(port=port, proc=proc, log=log)
    wait_in_log("milter: listening on")
    return port, proc

def wait_in_log(needle, timeout=10):
    """The log lines up to the first one containing needle."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = open(_vpsd["log"]).read().splitlines()
        for i, line in enumerate(lines):
            if needle in line:
                return lines[:i + 1]
        time.sleep(0.1)
    raise AssertionError(f"no log line with {needle!r}: {lines[-20:]}")

def eom_verdict(packets):
    return packets[-1][0]

# ---- tests -------------------------------------------------------------------

def test_version6_message():
    port, _ = vpsd()
    m = Mta(port)
    version, actions, protocol = m.negotiate()
    assert version == 6, version
    assert not protocol & 0x200, "NODATA must not be asked (40 ms stall)"
    assert protocol & 0x100000, "HDR_LEADSPC asked"
    pk = m.message()
    assert eom_verdict(pk) == b"c", pk
    assert (b"h", b"X-Scanned\0 vps\0") in pk, pk
    m.close()

def test_version2_negotiation():
    port, _ = vpsd()
    m = Mta(port)
    version, actions, protocol = m.negotiate(2, 0x3F, 0x7F)
    assert version == 2, version
    assert actions & ~0x3F == 0 and protocol & ~0x7F == 0, (hex(actions), hex(protocol))
    pk = m.message()
    assert eom_verdict(pk) == b"c", pk
    # no HDR_LEADSPC in version 2: the MTA adds the space
    assert (b"h", b"X-Scanned\0vps\0") in pk, pk
    m.close()

def test_rcpt_reject_reply():
    port, _ = vpsd()
    m = Mta(port)
    m.negotiate()
    m.step(connect_pkt(), 0x1000, 0x1)
    m.step(pkt(b"H", z("x")), 0x2000, 0x2)
    m.step(pkt(b"M", z("<a@example.com>")), 0x4000, 0x4)
    cmd, data = m.step(pkt(b"R", z("<nobody@example.org>")), 0x8000, 0x8)
    assert cmd == b"y" and data == b"550 5.1.1 No such user\0", (cmd, data)
    m.close()

HOSTILE = [
    ("length 0", struct.pack(">I", 0)),
    ("length 0x80000000", struct.pack(">I", 0x80000000) + b"O"),
    ("over the limit", struct.pack(">I", (1 << 20) + 2) + b"B" + b"x" * 1000),
    ("truncated CONNECT", pkt(b"C", z("host") + b"4" + b"\x00")),
    ("unknown command", pkt(b"Z", b"junk")),
    ("HELO without NUL", pkt(b"H", b"no-terminator")),
    ("odd macro list", pkt(b"D", b"C" + z("j") + z("host") + z("orphan"))),
    ("RCPT before MAIL's phase ended", None),
]

def test_hostile_packets_close_only_their_connection():
    port, proc = vpsd()
    good = Mta(port)
    good.negotiate()
    assert eom_verdict(good.message()) == b"c"
    for name, data in HOSTILE:
        bad = Mta(port)
        bad.negotiate()
        if data is None:
            # out of order: a HEADER, then MAIL again is fine, but DATA after
            # a BODY is not
            bad.step(connect_pkt(), 0x1000, 0x1)
            bad.send(pkt(b"M", z("<a@example.com>")))
            if bad.expects(0x4000):
                bad.reply()
            bad.send(pkt(b"B", b"body\r\n"))
            data = pkt(b"L", z("Late") + z("header"))
        bad.send(data)
        assert bad.closed_within(5), f"{name}: connection not closed"
        bad.close()
        # the well-behaved session is unaffected, on the same connection
        pk = good.message_only()
        assert eom_verdict(pk) == b"c", (name, pk)
    # before negotiation: anything but OPTNEG closes
    bad = Mta(port)
    bad.send(pkt(b"R", z("<x@example.org>")))
    assert bad.closed_within(5), "RCPT before OPTNEG not refused"
    bad.close()
    # version 1 is refused
    bad = Mta(port)
    bad.send(optneg(1, 0xF, 0x3F))
    assert bad.closed_within(5), "version 1 accepted"
    bad.close()
    assert eom_verdict(good.message_only()) == b"c"
    good.close()
    assert proc.poll() is None, "vpsd died"

def test_idle_session_times_out():
    port, proc = vpsd()
    idle = Mta(port)
    idle.negotiate()
    start = time.time()
    assert idle.closed_within(8), "idle session not closed"
    took = time.time() - start
    assert 1.5 <= took <= 6, took
    idle.close()
    # a connection that never negotiates is closed too (connect_timeout)
    mute = Mta(port)
    assert mute.closed_within(8), "silent connection not closed"
    mute.close()
    lines = wait_in_log("closing: timeout", timeout=5)
    assert "id=" in lines[-1], lines[-1]

def test_progress_while_connector_is_slow():
    port, _ = vpsd()
    m = Mta(port)
    m.negotiate()
    start = time.time()
    pk = m.message(subject="slow")
    took = time.time() - start
    cmds = [c for c, _ in pk]
    assert took >= 2.5, took
    assert b"p" in cmds, cmds
    assert cmds.index(b"p") < len(cmds) - 1 and cmds[-1] == b"c", cmds
    m.close()

def test_200_concurrent_sessions():
    port, proc = vpsd()
    conns = [Mta(port, timeout=30) for _ in range(200)]
    # every step goes to all sessions before any reply is read: vpsd holds
    # 200 sessions in flight on its two workers
    for c in conns:
        c.send(optneg())
    for c in conns:
        cmd, data = c.reply()
        assert cmd == b"O"
        c.opts = struct.unpack(">III", data[:12])
    opts = conns[0].opts
    steps = [(connect_pkt(), 0x1000, 0x1), (pkt(b"H", z("x")), 0x2000, 0x2),
             (pkt(b"M", z("<a@example.com>")), 0x4000, 0x4),
             (pkt(b"R", z("<b@example.org>")), 0x8000, 0x8),
             (pkt(b"T"), 0x10000, 0x200),
             (pkt(b"L", z("Subject") + z(" hi")), 0x80, 0x20),
             (pkt(b"B", b"x\r\n"), 0x80000, 0x10)]
    for data, nr, no in steps:
        if opts[2] & no:
            continue
        for c in conns:
            c.send(data)
        if not opts[2] & nr:
            for c in conns:
                assert c.reply()[0] == b"c"
    for c in conns:
        c.send(pkt(b"E"))
    for c in conns:
        while True:
            cmd, _ = c.reply()
            if cmd != b"h":
                assert cmd == b"c", cmd
                break
    for c in conns:
        c.send(pkt(b"Q"))
        c.close()
    assert proc.poll() is None

def begin_message(m, sender="alice@example.com"):
    """CONNECT .. RCPT of a message, leaving it open."""
    m.step(connect_pkt(), 0x1000, 0x1)
    m.step(pkt(b"H", z("client.example")), 0x2000, 0x2)
    r = m.step(pkt(b"M", z(f"<{sender}>")), 0x4000, 0x4)
    assert r is None or r[0] == b"c", r
    r = m.step(pkt(b"R", z("<bob@example.org>")), 0x8000, 0x8)
    assert r is None or r[0] == b"c", r

def end_message(m):
    r = m.step(pkt(b"L", z("Subject") + z(" hi")), 0x80, 0x20)
    r = m.step(pkt(b"B", b"x\r\n"), 0x80000, 0x10)
    m.send(pkt(b"E"))
    out = []
    while True:
        cmd, data = m.reply()
        out.append((cmd, data))
        if cmd != b"h":
            return out

def test_reload_keeps_engine_of_sessions_in_flight():
    port, proc = vpsd()
    old = Mta(port)
    old.negotiate()
    begin_message(old)
    rules = os.path.join(os.path.dirname(_vpsd["log"]), "rules.vsl")
    with open(rules, "w") as f:
        f.write(RULES + 'data { rule "new" => reject 550 5.7.1 "New rules" }\n')
    proc.send_signal(signal.SIGHUP)
    wait_in_log("reloaded")
    # the session begun before the reload finishes on the old rules ...
    pk = end_message(old)
    assert pk[-1][0] == b"c" and (b"h", b"X-Scanned\0 vps\0") in pk, pk
    old.close()
    # ... a new one gets the new rules
    new = Mta(port)
    new.negotiate()
    begin_message(new)
    pk = end_message(new)
    assert pk[-1] == (b"y", b"550 5.7.1 New rules\0"), pk
    new.close()

def test_drain_on_sigterm():
    port, proc = vpsd()
    idle = Mta(port)
    idle.negotiate()
    idle.step(connect_pkt(), 0x1000, 0x1)
    busy = Mta(port)
    busy.negotiate()
    begin_message(busy)
    proc.send_signal(signal.SIGTERM)
    # between messages: closed; in a message: it may finish
    assert idle.closed_within(3), "idle session not closed on drain"
    pk = end_message(busy)
    assert pk[-1][0] in (b"c", b"y"), pk
    assert busy.closed_within(3), "session not closed after its message"
    assert proc.wait(timeout=10) == 0
    # no new connections once draining
    try:
        late = socket.create_connection(("127.0.0.1", port), timeout=2)
        late.close()
        raise AssertionError("still accepting after SIGTERM")
    except OSError:
        pass

def test_unix_socket_listener():
    # The same server on a unix socket: a message through it, the socket
    # file removed when vpsd stops, and a stale socket file replaced.
    d = tmpdir()
    sock = os.path.join(d, "milter.sock")
    open(sock, "w").close()  # stale file left by a dead process
    with open(os.path.join(d, "rules.vsl"), "w") as f:
        f.write('data { rule "stamp" => add_header "X-Scanned" "vps" }\n')
    with open(os.path.join(d, "vps.conf"), "w") as f:
        f.write(f"[vpsd]\nrules = rules.vsl\nworkers = 2\n[milter]\nlisten = unix:{sock}\n"
                f"[log]\nlevel = info\n[quarantine]\ndir = q\n")
    log = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", os.path.join(d, "vps.conf")],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    taplib._procs.append(proc)
    deadline = time.time() + 10
    while "milter: listening on unix:" not in open(log).read():
        assert time.time() < deadline and proc.poll() is None, open(log).read()
        time.sleep(0.05)
    for _ in range(2):  # both workers accept from the one socket
        m = Mta(sock)
        m.negotiate()
        out = m.message()
        assert (b"h", z("X-Scanned") + z(" vps")) in out or \
               (b"h", z("X-Scanned") + z("vps")) in out, out
        assert out[-1][0] == b"c", out
        m.close()
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not os.path.exists(sock), "socket file left behind"

run([test_version6_message, test_unix_socket_listener, test_version2_negotiation, test_rcpt_reject_reply,
     test_hostile_packets_close_only_their_connection, test_idle_session_times_out,
     test_progress_while_connector_is_slow, test_200_concurrent_sessions,
     test_reload_keeps_engine_of_sessions_in_flight, test_drain_on_sigterm])
