#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `clamav` connector against libclamav and a real clamd.

No signature download: each test builds a tiny database at run time, an
.ndb body signature of the EICAR test string (ClamAV ships no built-in
EICAR detection, and an empty database directory does not load).  EICAR
plain, deflated in a zip, base64 in a multipart, inside a nested
message/rfc822 and six zips deep must be found (the raw message of all but
the first holds no EICAR bytes: finding them needs ClamAV's mail, base64
and zip parsers); a clean message is clean; a missing, empty or broken
database is an error (on_error, default tempfail), never clean; limits
(max_scan_size on a zip bomb, max_files, max_recursion, max_file_size,
clamd's StreamMaxLength) come back as limits_exceeded, never clean; the
engine reloads in a running vpsd when a signature is added; mode = clamd
talks to a sandboxed clamd (unix and TCP) with the same database, and to a
scripted clamd that checks the INSTREAM framing and plays every bad reply.
End to end: Postfix -> vpsd milter -> `call av` -> the virus is held in
Postfix's hold queue and in vps's quarantine store, a clean message is
delivered."""
import email.message, email.policy, io, json, os, socket, struct, subprocess, sys, threading
import time, uuid, zipfile

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from postfixlib import Postfix, SmtpSink, free_port, swaks, eod_reply, wait_listening

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
FOUND = "Vps-Test-Eicar.UNOFFICIAL"  # ClamAV marks signatures of unsigned files
LIMIT = "Heuristics.Limits.Exceeded."


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def make_db(d, name="db"):
    db = os.path.join(d, name)
    os.makedirs(db, exist_ok=True)
    write(os.path.join(db, "eicar.ndb"), f"Vps-Test-Eicar:0:*:{EICAR.hex()}\n")
    return db


# ---- test messages -----------------------------------------------------------

def zip_of(files):
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return z.getvalue()


def message(parts=(), text="Hello\n", subject="test"):
    m = email.message.EmailMessage()
    m["From"] = "alice@example.com"
    m["To"] = "bob@example.org"
    m["Subject"] = subject
    m.set_content(text)
    for kind, payload, filename in parts:
        if kind == "rfc822":
            m.add_attachment(email.message_from_bytes(payload, policy=email.policy.SMTP))
        else:
            maintype, subtype = kind.split("/")
            m.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes(policy=email.policy.SMTP)


def deep_zip(levels):
    data = zip_of([("eicar.com", EICAR)])
    for i in range(levels - 1):
        data = zip_of([(f"level{i}.zip", data)])
    return data


def virus_messages():
    plain = (b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: plain\r\n\r\n"
             + EICAR + b"\r\n")
    in_zip = message([("application/zip", zip_of([("eicar.com", EICAR)]), "x.zip")])
    b64 = message([("application/octet-stream", EICAR, "eicar.com")])
    nested = message([("rfc822", message([("application/zip", zip_of([("e.com", EICAR)]),
                                           "inner.zip")], subject="inner"), None)],
                     subject="outer")
    deep = message([("application/zip", deep_zip(6), "deep.zip")])
    out = {"plain": plain, "zip": in_zip, "base64": b64, "nested": nested, "deep": deep}
    for name, raw in out.items():
        if name != "plain":  # found only by decoding, never by the raw bytes
            assert EICAR not in raw, name
    assert b"message/rfc822" in nested and b"base64" in b64
    return out


CLEAN = message(text="Nothing to see here.\n")


# ---- vpsctl run ----------------------------------------------------------------

RULES = """
data {
  rule "scan" => call av
  rule "virus" when av.infected => quarantine "virus"
  rule "unscanned" when av.limits_exceeded => tempfail 451 4.7.1 "Cannot scan this"
}
"""


def make_conf(d, connector, rules=RULES, extra=""):
    write(os.path.join(d, "rules.vsl"), rules)
    conf = os.path.join(d, "vps.conf")
    write(conf, f"""
[vpsd]
rules = rules.vsl
workers = 2
[log]
level = info
[quarantine]
dir = q
names = virus
{connector}
{extra}
""")
    return conf


def av_block(extra="", timeout="20s", body="database = db"):
    return f"[connector av]\ntype = clamav\n{body}\ntimeout = {timeout}\n{extra}\n"


def vpsctl_run(conf, raw):
    d = os.path.dirname(conf)
    path = os.path.join(d, f"m-{uuid.uuid4().hex[:8]}.eml")
    write(path, raw)
    p = subprocess.run([VPSCTL, "-c", conf, "run", path, "--json"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout), p.stderr


def av_result(report):
    found = [r for s in report["stages"] for r in s.get("results", [])
             if r["connector"] == "av"]
    assert len(found) == 1, report
    return found[0]


def check_infected(conf, raw, what):
    report, err = vpsctl_run(conf, raw)
    r = av_result(report)
    assert not r["error"], (what, r, err)
    assert r["fields"] == {"infected": True, "name": FOUND, "limits_exceeded": False,
                           "clean": False}, (what, r)
    assert report["verdict"] == "quarantine" and report["quarantine"] == "virus", (what, report)


def check_clean(conf, raw=CLEAN):
    report, err = vpsctl_run(conf, raw)
    r = av_result(report)
    assert not r["error"], (r, err)
    assert r["fields"] == {"infected": False, "name": "", "limits_exceeded": False,
                           "clean": True}, r
    assert report["verdict"] == "accept", report


def check_limit(conf, raw, limit, verdict="tempfail"):
    report, err = vpsctl_run(conf, raw)
    r = av_result(report)
    assert not r["error"], (limit, r, err)
    assert r["fields"] == {"infected": False, "name": LIMIT + limit, "limits_exceeded": True,
                           "clean": False}, (limit, r)
    assert report["verdict"] == verdict, (limit, report)
    return report, r


def test_eicar_found_plain_zip_base64_nested_deep():
    d = tmpdir()
    make_db(d)
    conf = make_conf(d, av_block())
    for what, raw in virus_messages().items():
        check_infected(conf, raw, what)


def test_clean_message_is_clean():
    d = tmpdir()
    make_db(d)
    conf = make_conf(d, av_block())
    check_clean(conf)
    # a message that merely talks about viruses is clean too
    check_clean(conf, message(text="EICAR-STANDARD-ANTIVIRUS-TEST-FILE is a test string\n"))


def test_database_missing_empty_or_broken_is_an_error():
    d = tmpdir()
    os.makedirs(os.path.join(d, "empty"))
    os.makedirs(os.path.join(d, "broken"))
    write(os.path.join(d, "broken", "bad.ndb"), "this is not a signature\n")
    os.makedirs(os.path.join(d, "nosigs"))
    write(os.path.join(d, "nosigs", "none.ndb"), "")
    for db, on_error, want in (("nosuch", None, "tempfail"), ("empty", None, "tempfail"),
                               ("broken", None, "tempfail"), ("nosigs", None, "tempfail"),
                               ("nosuch", "reject", "reject")):
        extra = f"on_error = {on_error}" if on_error else ""
        conf = make_conf(d, av_block(extra, body=f"database = {db}"))
        for raw in (CLEAN, virus_messages()["plain"]):
            report, err = vpsctl_run(conf, raw)
            r = av_result(report)
            assert r["error"] and r["verdict"] == want, (db, r)
            assert report["verdict"] == want and report["stage"] == "data", (db, report)
            assert "infected" not in r["fields"] and "clean" not in r["fields"], r
        assert "clamav av:" in err and "every scan fails" in err, (db, err)


def test_limits_exceeded_is_never_clean():
    d = tmpdir()
    make_db(d)
    bomb = message([("application/zip", zip_of([("zeros.bin", b"\0" * (8 << 20))]), "b.zip")])
    assert len(bomb) < 64 * 1024, len(bomb)
    many = message([("application/zip",
                     zip_of([(f"f{i}.txt", b"file %d" % i) for i in range(10)]
                            + [("zz.com", EICAR)]), "many.zip")])
    padded = message(text="x" * 4000 + "\n")
    cases = [("max_scan_size = 1M", bomb, "MaxScanSize"),
             ("max_files = 5", many, "MaxFiles"),
             ("max_recursion = 3", virus_messages()["deep"], "MaxRecursion"),
             ("max_file_size = 2K", padded, "MaxFileSize")]
    for key, raw, limit in cases:
        conf = make_conf(d, av_block(key))
        check_limit(conf, raw, limit)
    # within the default limits the same messages are scanned to the end
    conf = make_conf(d, av_block())
    check_clean(conf, bomb)
    check_infected(conf, many, "many")
    check_clean(conf, padded)
    # the connector's own verdict for a limit hit, without any rule
    conf = make_conf(d, av_block("max_scan_size = 1M\non_limits = reject"),
                     rules='data { rule "scan" => call av }\n')
    report, r = check_limit(conf, bomb, "MaxScanSize", verdict="reject")
    assert r["verdict"] == "reject", r
    assert report["text"] == "Message could not be scanned completely", report


def test_connector_verdicts_on_infected():
    d = tmpdir()
    make_db(d)
    plain = virus_messages()["plain"]
    conf = make_conf(d, av_block("on_infected = reject"), rules='data { rule "s" => call av }\n')
    report, _ = vpsctl_run(conf, plain)
    assert report["verdict"] == "reject", report
    assert report["code"] == 550 and report["text"] == f"Virus found: {FOUND}", report
    conf = make_conf(d, av_block("on_infected = quarantine\nquarantine = virus"),
                     rules='data { rule "s" => call av }\n')
    report, _ = vpsctl_run(conf, plain)
    assert report["verdict"] == "quarantine" and report["quarantine"] == "virus", report
    report, _ = vpsctl_run(conf, CLEAN)
    assert report["verdict"] == "accept", report


def test_called_before_data_is_an_error():
    d = tmpdir()
    make_db(d)
    conf = make_conf(d, av_block(), rules='mail { rule "m" => call av }\n')
    report, err = vpsctl_run(conf, CLEAN)
    r = av_result(report)
    assert r["error"] and report["verdict"] == "tempfail" and report["stage"] == "mail", report
    assert "clamav av: called at mail, before the message is known" in err, err


def test_config_errors():
    d = tmpdir()
    make_db(d)
    cases = [
        ("mode = fast", "mode"),
        ("", "database"),  # library mode without database
        ("database = db\naddress = unix:/x", "address"),
        ("database = db\nmax_files = 0", "max_files"),
        ("database = db\nmax_recursion = 1000", "max_recursion"),
        ("database = db\nmax_scan_size = lots", "max_scan_size"),
        ("database = db\nthreads = 0", "threads"),
        ("database = db\non_infected = maybe", "on_infected"),
        ("database = db\non_limits = later", "on_limits"),
        ("database = db\nbogus = 1", "bogus"),
        ("mode = clamd", "address"),
        ("mode = clamd\naddress = unix:/x\nmax_scan_size = 1M", "max_scan_size"),
        ("mode = clamd\naddress = unix:/x\ndatabase = db", "database"),
        ("mode = clamd\naddress = inet:127.0.0.1:0", "address"),
        ("mode = clamd\naddress = tcp:somewhere", "address"),
    ]
    for body, key in cases:
        conf = make_conf(d, av_block(body=body))
        p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1, (body, p.stdout, p.stderr)
        assert "[connector av]" in p.stderr and key in p.stderr, (body, p.stderr)
    # a rule reading a field the connector does not have is refused at load
    conf = make_conf(d, av_block(), rules='data { rule "s" => call av\n'
                     ' rule "x" when av.score > 1 => reject }\n')
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "score" in p.stderr, p.stderr


# ---- vpsd: a milter client ---------------------------------------------------------

def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(s):
    return (s if isinstance(s, bytes) else s.encode()) + b"\0"


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


def milter_message(port, raw, timeout=30):
    """One milter session with one message (headers and body of raw);
    the final reply (command, data) to end-of-message."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(pkt(b"O", struct.pack(">III", 6, 0x1FF, 0)))
    cmd, data = read_packet(s)
    assert cmd == b"O", cmd
    proto = struct.unpack(">III", data[:12])[2]

    def reply():
        while True:
            c, d = read_packet(s)
            if c != b"p":  # progress
                return c, d

    def step(packet, nr_bit, no_bit):
        if proto & no_bit:
            return
        s.sendall(packet)
        if not proto & nr_bit:
            c, d = reply()
            assert c == b"c", (packet[:8], c, d)

    head, _, body = raw.partition(b"\r\n\r\n")
    step(pkt(b"C", z("client.example") + b"4" + struct.pack(">H", 4242) + z("192.0.2.1")),
         0x1000, 0x1)
    step(pkt(b"H", z("client.example")), 0x2000, 0x2)
    step(pkt(b"M", z("<alice@example.com>")), 0x4000, 0x4)
    step(pkt(b"R", z("<bob@example.org>")), 0x8000, 0x8)
    step(pkt(b"T"), 0x10000, 0x200)
    for line in head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t").split(b"\r\n"):
        name, _, value = line.partition(b":")
        if not proto & 0x100000:
            value = value.lstrip(b" ")
        step(pkt(b"L", z(name) + z(value)), 0x80, 0x20)
    step(pkt(b"N"), 0x40000, 0x40)
    for i in range(0, len(body), 60000):
        step(pkt(b"B", body[i:i + 60000]), 0x80000, 0x10)
    s.sendall(pkt(b"E"))
    while True:
        c, d = reply()
        if c in (b"c", b"a", b"r", b"t", b"d", b"y"):
            s.sendall(pkt(b"Q"))
            s.close()
            return c, d
        # modifications and quarantine ("q") come before the final reply


def start_vpsd(d, conf, needle="milter: listening on", timeout=30):
    log = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", conf], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    taplib._procs.append(proc)
    deadline = time.time() + timeout
    while needle not in open(log).read():
        assert proc.poll() is None and time.time() < deadline, open(log).read()[-3000:]
        time.sleep(0.05)
    return proc, log


REJECT_RULES = """
data {
  rule "scan" => call av
  rule "marker" when av.name == "Vps-Test-Marker.UNOFFICIAL" => reject 550 5.7.1 "Marker found"
  rule "virus" when av.infected => reject 550 5.7.1 "Virus found"
}
"""


def test_reload_when_a_signature_is_added():
    d = tmpdir()
    db = make_db(d)
    port = free_port()
    conf = make_conf(d, av_block("reload_interval = 1s"), rules=REJECT_RULES,
                     extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    proc, log = start_vpsd(d, conf)
    marker = f"VPS-RELOAD-MARKER-{uuid.uuid4().hex}"
    raw = message(text=f"Contains {marker} in its body.\n")
    assert milter_message(port, raw)[0] == b"c"
    assert milter_message(port, virus_messages()["zip"]) == (b"y", z("550 5.7.1 Virus found"))
    write(os.path.join(db, "marker.ndb"), f"Vps-Test-Marker:0:*:{marker.encode().hex()}\n")
    deadline = time.time() + 30
    while True:
        got = milter_message(port, raw)
        if got[0] == b"y":
            break
        assert got[0] == b"c" and time.time() < deadline, (got, open(log).read()[-2000:])
        time.sleep(0.3)
    assert got == (b"y", z("550 5.7.1 Marker found")), got
    assert "clamav av: reloaded 2 signatures" in open(log).read(), open(log).read()[-2000:]
    # a broken file: the reload fails, the engine in use stays
    write(os.path.join(db, "broken.ndb"), "not a signature\n")
    deadline = time.time() + 30
    while "reload failed, the previous database stays" not in open(log).read():
        milter_message(port, CLEAN)
        assert time.time() < deadline, open(log).read()[-2000:]
        time.sleep(0.3)
    assert milter_message(port, raw)[0] == b"y"
    assert milter_message(port, CLEAN)[0] == b"c"
    proc.terminate()
    assert proc.wait(timeout=30) == 0, open(log).read()[-3000:]
    assert "Sanitizer" not in open(log).read(), open(log).read()[-3000:]


# ---- clamd -------------------------------------------------------------------------

def start_clamd(d, db, extra=""):
    """A sandboxed clamd (foreground, own socket, pid and temp dir) on a unix
    socket and a free TCP port; returns (process, unix path, port)."""
    cd = os.path.join(d, "clamd")
    os.makedirs(cd, exist_ok=True)
    sock = os.path.join(cd, "clamd.sock")
    port = free_port()
    conf = os.path.join(cd, "clamd.conf")
    write(conf, f"""Foreground yes
LocalSocket {sock}
TCPSocket {port}
TCPAddr 127.0.0.1
DatabaseDirectory {db}
TemporaryDirectory {cd}
PidFile {cd}/clamd.pid
LogFile {cd}/clamd.log
AlertExceedsMax yes
SelfCheck 1
{extra}
""")
    proc = taplib.spawn(["clamd", "-c", conf])
    deadline = time.time() + 60
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(b"zPING\0")
            if s.recv(10) == b"PONG\0":
                s.close()
                break
        except OSError:
            pass
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.1)
    wait_listening(port)
    return proc, sock, port


def test_clamd_mode_unix_and_tcp():
    d = tmpdir()
    db = make_db(d)
    _, sock, port = start_clamd(d, db, "StreamMaxLength 1M\nMaxScanSize 1M")
    bomb = message([("application/zip", zip_of([("zeros.bin", b"\0" * (8 << 20))]), "b.zip")])
    big = message([("application/octet-stream", os.urandom(2 << 20), "big.bin")])
    for address in (f"unix:{sock}", f"inet:127.0.0.1:{port}"):
        conf = make_conf(d, av_block(body=f"mode = clamd\naddress = {address}"))
        for what, raw in virus_messages().items():
            check_infected(conf, raw, what)
        check_clean(conf)
        check_limit(conf, bomb, "MaxScanSize")
        # StreamMaxLength: clamd refuses the stream (and closes mid-write)
        check_limit(conf, big, "StreamMaxLength")


class FakeClamd:
    """Accepts INSTREAM connections, checks the framing, keeps the streamed
    bytes and answers with answer(data): bytes to send, None to close
    without a word, or ("sleep", s, bytes)."""

    def __init__(self, answer):
        self.answer = answer
        self.streams = []
        self.errors = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"inet:127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(20)
            cmd = recv_exact(c, len(b"zINSTREAM\0"))
            if cmd != b"zINSTREAM\0":
                self.errors.append(("command", cmd))
                return
            data = b""
            while True:
                (n,) = struct.unpack(">I", recv_exact(c, 4))
                if n == 0:
                    break
                if n > 65536:
                    self.errors.append(("chunk", n))
                data += recv_exact(c, n)
            self.streams.append(data)
            out = self.answer(data)
            if isinstance(out, tuple):
                time.sleep(out[1])
                out = out[2]
            if out is not None:
                c.sendall(out)
        except (OSError, EOFError) as e:
            self.errors.append(("io", repr(e)))
        finally:
            c.close()


def test_scripted_clamd_framing_and_bad_replies():
    d = tmpdir()
    big = message([("application/octet-stream", os.urandom(300 * 1024), "big.bin")])
    cases = [  # (reply, error?, fields or None)
        (b"stream: OK\0", False, {"infected": False, "name": "", "limits_exceeded": False,
                                  "clean": True}),
        (b"stream: Evil.Test-1 FOUND\0", False, {"infected": True, "name": "Evil.Test-1",
                                                 "limits_exceeded": False, "clean": False}),
        (b"stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND\0", False,
         {"infected": False, "name": "Heuristics.Limits.Exceeded.MaxScanSize",
          "limits_exceeded": True, "clean": False}),
        (b"stream: Evil.NoNul FOUND", False, {"infected": True, "name": "Evil.NoNul",
                                              "limits_exceeded": False, "clean": False}),
        (b"stream: Two Words FOUND\0", True, None),
        (b"stream: Bad\x01Name FOUND\0", True, None),
        (b"stream:  FOUND\0", True, None),
        (b"stream: " + b"A" * 300 + b" FOUND\0", True, None),
        (b"Can't allocate memory ERROR\0", True, None),
        (b"hello\0", True, None),
        (b"stream: OK" + b" " * 2000, True, None),  # no NUL within the reply limit
        (None, True, None),
    ]
    for reply, error, fields in cases:
        srv = FakeClamd(lambda data, reply=reply: reply)
        conf = make_conf(d, av_block(body=f"mode = clamd\naddress = {srv.address}"))
        report, err = vpsctl_run(conf, big)
        r = av_result(report)
        assert r["error"] == error, (reply, r, err)
        if error:
            assert report["verdict"] == "tempfail", (reply, report)
            assert "X-Virus" not in json.dumps(report)
        else:
            assert r["fields"] == fields, (reply, r)
        assert srv.streams == [big], (reply, [len(s) for s in srv.streams], len(big))
        assert not [e for e in srv.errors if e[0] != "io"], srv.errors
    # slow clamd: the timeout ends the call with on_error, in time
    srv = FakeClamd(lambda data: ("sleep", 5, b"stream: OK\0"))
    conf = make_conf(d, av_block("on_error = reject", timeout="1s",
                                 body=f"mode = clamd\naddress = {srv.address}"))
    t0 = time.time()
    report, _ = vpsctl_run(conf, CLEAN)
    assert time.time() - t0 < 4.5, time.time() - t0
    r = av_result(report)
    assert r["error"] and report["verdict"] == "reject", report
    # nobody listening
    conf = make_conf(d, av_block(body=f"mode = clamd\naddress = inet:127.0.0.1:{free_port()}"))
    report, _ = vpsctl_run(conf, CLEAN)
    assert av_result(report)["error"] and report["verdict"] == "tempfail", report
    conf = make_conf(d, av_block(body="mode = clamd\naddress = unix:nosuch.sock"))
    report, _ = vpsctl_run(conf, CLEAN)
    assert av_result(report)["error"] and report["verdict"] == "tempfail", report


def test_event_loop_not_blocked_by_slow_scans():
    """While scans wait on a slow clamd, other milter sessions of the same
    workers are answered at once."""
    d = tmpdir()
    srv = FakeClamd(lambda data: ("sleep", 3, b"stream: OK\0"))
    port = free_port()
    conf = make_conf(d, av_block(timeout="10s", body=f"mode = clamd\naddress = {srv.address}"),
                     rules=REJECT_RULES, extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    proc, log = start_vpsd(d, conf)
    slow = {}
    threads = [threading.Thread(target=lambda i=i: slow.update({i: milter_message(port, CLEAN)}))
               for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for _ in range(10):
        t0 = time.time()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(pkt(b"O", struct.pack(">III", 6, 0x1FF, 0)))
        assert read_packet(s)[0] == b"O"
        s.close()
        assert time.time() - t0 < 1.5, time.time() - t0  # a blocked worker would wait ~3 s
    for t in threads:
        t.join(30)
    assert all(v[0] == b"c" for v in slow.values()) and len(slow) == 4, slow
    proc.terminate()
    assert proc.wait(timeout=30) == 0, open(log).read()[-3000:]


# ---- Postfix -> vpsd -> clamav -------------------------------------------------------

def doc_main_cf():
    """The main.cf lines of docs/postfix.md (its first ```ini block with
    smtpd_milters)."""
    blocks, cur = [], None
    for line in open(os.path.join(SRC, "docs", "postfix.md"), encoding="utf-8"):
        if cur is None and line.strip() == "```ini":
            cur = []
        elif cur is not None and line.strip() == "```":
            blocks.append(cur)
            cur = None
        elif cur is not None:
            cur.append(line)
    for block in blocks:
        params = {}
        for line in block:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                params[name.strip()] = value.strip()
        if "smtpd_milters" in params:
            return params
    raise AssertionError("docs/postfix.md has no ```ini block with smtpd_milters")


def test_postfix_virus_held_and_quarantined():
    d = tmpdir()
    make_db(d)
    port = free_port()
    conf = make_conf(d, av_block(), extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    vpsd, log = start_vpsd(d, conf)
    os.makedirs(os.path.join(d, "sink"))
    sink = SmtpSink(os.path.join(d, "sink")).start()
    main = {k: v.replace("127.0.0.1:10030", f"127.0.0.1:{port}")
            for k, v in doc_main_cf().items()}
    pf = Postfix(os.path.join(d, "pf"), relay_port=sink.port, main_cf_extra=main)
    try:
        pf.start()
        token = uuid.uuid4().hex[:12]
        virus = message([("application/zip", zip_of([("eicar.com", EICAR)]), "invoice.zip")],
                        subject=f"virus {token}")
        path = os.path.join(d, "virus.eml")
        write(path, virus)
        rc, t = swaks(pf.port, from_="alice@example.com", to="bob@example.org",
                      data=f"@{path}")
        assert rc == 0, t  # a quarantine looks like success to the client
        code, text = eod_reply(t)
        assert code == 250 and "queued as" in text, t
        qid = text.split()[-1]
        pf.wait_log(rf"{qid}: milter-hold: END-OF-MESSAGE from .*: milter triggers HOLD action")
        assert qid in pf.hold_queue(), pf.hold_queue()
        assert f"virus {token}" in pf.postcat(qid, "-h"), pf.postcat(qid, "-h")
        entries = json.loads(subprocess.run(
            [VPSCTL, "-c", conf, "quarantine", "list", "--json"], capture_output=True,
            text=True, timeout=30, check=True).stdout)
        mine = [e for e in entries if e.get("subject") == f"virus {token}"]
        assert len(mine) == 1 and mine[0]["name"] == "virus", entries
        raw = subprocess.run([VPSCTL, "-c", conf, "quarantine", "show", mine[0]["id"],
                              "--format", "raw"], capture_output=True, timeout=30).stdout
        assert b"invoice.zip" in raw, raw[:500]
        assert f"clamav av: infected: {FOUND}" in open(log).read()
        # a clean message goes through
        rc, t = swaks(pf.port, from_="alice@example.com", to="bob@example.org",
                      h_Subject=f"clean {token}", body=f"clean body {token}")
        assert rc == 0 and eod_reply(t)[0] == 250, t
        deadline = time.time() + 30
        while not any(f"clean body {token}" in m.message for m in sink.messages()):
            assert time.time() < deadline, "clean message not delivered"
            time.sleep(0.1)
        assert not any(f"virus {token}" in m.message for m in sink.messages())
    finally:
        pf.stop()
        sink.stop()
    vpsd.terminate()
    assert vpsd.wait(timeout=30) == 0, open(log).read()[-3000:]


# ---- docs/connectors.md ----------------------------------------------------------

def test_docs_example_loads_and_works():
    """The ```ini and ```vsl example of the clamav section of
    docs/connectors.md, with its database path pointed at a test one."""
    text = open(os.path.join(SRC, "docs", "connectors.md"), encoding="utf-8").read()
    section = text.split("\n## `clamav`", 1)[1].split("\n## ", 1)[0]
    ini = section.split("```ini\n", 1)[1].split("```", 1)[0]
    vsl = section.split("```vsl\n", 1)[1].split("```", 1)[0]
    d = tmpdir()
    make_db(d)
    assert "[quarantine]" in ini and "names = virus, unscanned" in ini, ini
    ini = "\n".join("database = db" if l.startswith("database") else l
                    for l in ini.split("[quarantine]")[0].splitlines())
    conf = make_conf(d, ini, rules=vsl)
    write(conf, open(conf).read().replace("names = virus", "names = virus, unscanned"))
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    report, _ = vpsctl_run(conf, virus_messages()["nested"])
    assert report["verdict"] == "quarantine", report
    report, _ = vpsctl_run(conf, CLEAN)
    assert report["verdict"] in ("accept", "continue"), report
    conf = make_conf(d, ini.replace("timeout = 60s", "timeout = 60s\nmax_scan_size = 1M"),
                     rules=vsl)
    write(conf, open(conf).read().replace("names = virus", "names = virus, unscanned"))
    bomb = message([("application/zip", zip_of([("zeros.bin", b"\0" * (8 << 20))]), "b.zip")])
    report, _ = vpsctl_run(conf, bomb)
    assert report["verdict"] == "quarantine" and report["quarantine"] == "unscanned", report


run([test_eicar_found_plain_zip_base64_nested_deep, test_clean_message_is_clean,
     test_database_missing_empty_or_broken_is_an_error, test_limits_exceeded_is_never_clean,
     test_connector_verdicts_on_infected, test_called_before_data_is_an_error, test_config_errors,
     test_reload_when_a_signature_is_added, test_clamd_mode_unix_and_tcp,
     test_scripted_clamd_framing_and_bad_replies, test_event_loop_not_blocked_by_slow_scans,
     test_postfix_virus_held_and_quarantined, test_docs_example_loads_and_works])
