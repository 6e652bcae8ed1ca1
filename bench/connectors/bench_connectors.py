#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-connectors: what a `call` costs, per connector, through vpsd's milter.

For each connector vpsd runs alone with a milter listener and the rule file
`data { rule "c" => call X }`; a raw milter MTA peer (milterpeer.py, one
thread per session, one connection per session carrying one transaction
after another, as Postfix does for a multi-message SMTP session) sends 5 KB
messages at 1 and 16 concurrent sessions for a fixed time.  The connectors
and their local endpoints:

  test    type test (answers from its configuration): the zero-cost baseline
  http    mode json against endpoint.py (threaded http.server, keep-alive,
          answers {"verdict":"continue"}), send_body = yes
  exec    /bin/sh script printing verdict=continue (a fork and exec per call)
  clamav  mode library, a one-signature EICAR .ndb built here (no download)
  policy  a second vpsd's [policy] listener (Postfix policy protocol)
  grpc    vps.v1.Policy/Check on that second vpsd's [grpc] listener

Reported per connector and session count: messages/s (whole transactions:
MAIL, RCPT, DATA, content, EOM), the end-of-message round trip p50/p99 and
what it adds over the `test` connector at the same session count, vpsd's CPU
per message (utime + stime from /proc), the endpoint's CPU per message (the
HTTP server, the second vpsd, or the exec children reaped by vpsd) and the
load generator's own CPU per message (when it nears 1 s per second it is
the limit, not vpsd).

Then ClamAV's in-process engine on a clean 1 MB message (a text part and a
~750 KB random attachment in base64): N end-of-message round trips with the
clamav connector minus the same with the test connector is the scan; MB/s =
message size / that time, at 1 session and at as many as the engine has
scan threads (aggregate).

Then the event loop: 4 sessions wait at end of message on an HTTP endpoint
that sleeps 2 s (every worker has calls in flight); meanwhile fresh sessions
(another client address, for which no rule calls) open, negotiate and get
their connect reply, then send a whole message.  The same with 4 sessions
streaming 1 MB messages through ClamAV.  The times must stay in
milliseconds: a blocked loop would show the 2 s.

Environment: BENCH_CONN_SECONDS [2] per run, BENCH_CONN_SESSIONS [1,16],
BENCH_CONN_CONNECTORS [test,http,exec,clamav,policy,grpc],
BENCH_CONN_SIZE [5120], BENCH_CONN_SCANS [20], BENCH_CONN_WORKERS [vpsd's
default: one per core].
"""
import email.message, os, random, shutil, socket, statistics, subprocess, sys, tempfile
import threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from milterpeer import Peer  # noqa: E402

env = os.environ.get
TICK = os.sysconf("SC_CLK_TCK")
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PROBE_IP = "192.0.2.9"  # fresh sessions of the event-loop test: no rule calls for them
SLOW_SESSIONS = 4
OK = (b"c", b"a")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, log, seconds=15):
    deadline = time.time() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"bench-connectors: {what} did not start; see {log}")
            time.sleep(0.05)


def cpu(pid, children=False):
    """utime + stime of a process (with children: of its reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    i = 13 if children else 11
    return (int(fields[i]) + int(fields[i + 1])) / TICK


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


# ---- messages -----------------------------------------------------------------

def split_message(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += b"\r\n" + line
        else:
            name, _, value = line.partition(b":")
            headers.append([name, value])
    return headers, body


def small_message(size):
    """A plain text message of size bytes (CRLF), no MIME parts."""
    head = (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
            b"Subject: bench-connectors\r\nMessage-ID: <bench@example.com>\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n")
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 2)] + b"\r\n"
    return split_message(head + body)


def big_message(size, tail=b""):
    """A clean multipart message of about size bytes: a text part and a
    random binary attachment in base64 (what ClamAV decodes and scans),
    ending in tail."""
    m = email.message.EmailMessage()
    m["From"] = "alice@example.com"
    m["To"] = "bob@example.org"
    m["Subject"] = "bench-connectors 1 MB"
    m.set_content("The attachment is random bytes.\n")
    raw_len = int(size * 57 / 78) - 2048  # base64: 57 bytes per 76-char line + CRLF
    m.add_attachment(random.Random(1).randbytes(raw_len) + tail, maintype="application",
                     subtype="octet-stream", filename="random.bin")
    raw = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return split_message(raw), len(raw)


# ---- vpsd ---------------------------------------------------------------------

class Vpsd:
    def __init__(self, build, work, name, conf, rules):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "rules.vsl"), "w") as f:
            f.write(rules)
        workers = env("BENCH_CONN_WORKERS")
        with open(os.path.join(self.dir, "vps.conf"), "w") as f:
            f.write(f"[vpsd]\nrules = rules.vsl\n{'workers = ' + workers if workers else ''}\n"
                    f"[log]\nlevel = warning\n[quarantine]\ndir = quarantine\n{conf}")
        self.log = os.path.join(self.dir, "vpsd.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([os.path.join(build, "vps", "cmd", "vpsd"), "-c",
                                          os.path.join(self.dir, "vps.conf")],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def milter_vpsd(build, work, name, connector_conf, rules):
    port = free_port()
    v = Vpsd(build, work, name, f"[milter]\nlisten = inet:127.0.0.1:{port}\n"
                                f"max_sessions = 200\n{connector_conf}", rules)
    v.port = port
    wait_port(port, v.proc, f"vpsd ({name})", v.log)
    return v


# ---- load ---------------------------------------------------------------------

def one_message(p, blob):
    """One transaction on an open session: the EOM round trip in seconds."""
    r = p.envelope()
    if r:
        raise RuntimeError(f"envelope answered {r[0]!r} {r[1]!r}")
    p.send_content(blob)
    t0 = time.perf_counter()
    cmd, data, _ = p.eom()
    t1 = time.perf_counter()
    if cmd not in OK:
        raise RuntimeError(f"end of message answered {cmd!r} {data[:200]!r}")
    return t1 - t0


def load(port, sessions, message, seconds=None, count=None):
    """sessions threads, each on its own connection, send message until
    seconds have passed (or count messages each); EOM round trips and
    the wall time from the first start to the last finish."""
    headers, body = message
    lats, errors, lock = [], [], threading.Lock()
    start = threading.Barrier(sessions + 1)

    def run():
        mine = []
        try:
            p = Peer("127.0.0.1", port)
            p.open()
            blob = p.content(headers, body)
            start.wait()
            deadline = time.perf_counter() + seconds if seconds else None
            while (deadline and time.perf_counter() < deadline) or (count and len(mine) < count):
                mine.append(one_message(p, blob))
            p.close()
        except Exception as e:  # reported by the caller, never a silent fast run
            errors.append(repr(e))
            start.abort()  # the others must not wait for this one
        with lock:
            lats.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(sessions)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t0, c0 = time.perf_counter(), sum(os.times()[:2])
    for t in threads:
        t.join()
    wall, driver = time.perf_counter() - t0, sum(os.times()[:2]) - c0
    if errors:
        raise SystemExit(f"bench-connectors: {len(errors)} sessions failed: {errors[0]}")
    return dict(n=len(lats), wall=wall, lats=lats, driver=driver)


def warm_up(port, message, what, log, seconds=60):
    """Until a message passes (the ClamAV engine loads in the background:
    until then calls fail and on_error tempfails)."""
    deadline = time.time() + seconds
    while True:
        try:
            load(port, 1, message, count=20)
            return
        except SystemExit as e:
            if time.time() > deadline:
                raise SystemExit(f"bench-connectors: {what} never answered: {e}; see {log}")
            time.sleep(0.2)


# ---- the event loop under slow calls --------------------------------------------

def probe(port, message):
    """A fresh session: (negotiate + connect reply, whole message) in seconds."""
    t0 = time.perf_counter()
    p = Peer("127.0.0.1", port, client_ip=PROBE_IP)
    p.negotiate()
    r = p.connect()
    t1 = time.perf_counter()
    if not r or r[0] != b"c":
        raise SystemExit(f"bench-connectors: probe connect answered {r!r}")
    p.helo()
    one_message(p, p.content(*message))
    t2 = time.perf_counter()
    p.close()
    return t1 - t0, t2 - t0


def responsiveness(port, probe_msg, busy_msg, busy_seconds):
    """SLOW_SESSIONS sessions send busy_msg until busy_seconds have passed
    (at least once); fresh sessions probe every 50 ms while all of them are
    still busy."""
    idle = [probe(port, probe_msg) for _ in range(10)]
    busy_lats, errors, left = [], [], [SLOW_SESSIONS]
    lock = threading.Lock()

    def slow():
        try:
            p = Peer("127.0.0.1", port)
            p.open()
            blob = p.content(*busy_msg)
            until, sent = time.perf_counter() + busy_seconds, 0
            while not sent or time.perf_counter() < until:
                lat = one_message(p, blob)
                sent += 1
                with lock:
                    busy_lats.append(lat)
            p.close()
        except Exception as e:
            errors.append(repr(e))
        with lock:
            left[0] -= 1

    threads = [threading.Thread(target=slow) for _ in range(SLOW_SESSIONS)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the calls are out
    probes = []
    while left[0] == SLOW_SESSIONS:  # every busy session still in flight
        probes.append(probe(port, probe_msg))
        time.sleep(0.05)
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"bench-connectors: busy sessions failed: {errors[0]}")
    return idle, probes, busy_lats


# ---- main ---------------------------------------------------------------------

def main():
    build = os.path.abspath(sys.argv[1])
    seconds = float(env("BENCH_CONN_SECONDS", "2"))
    sessions = [int(x) for x in env("BENCH_CONN_SESSIONS", "1,16").split(",")]
    names = env("BENCH_CONN_CONNECTORS", "test,http,exec,clamav,policy,grpc").split(",")
    size = int(env("BENCH_CONN_SIZE", "5120"))
    scans = int(env("BENCH_CONN_SCANS", "20"))
    small = small_message(size)
    big, big_size = big_message(1 << 20)
    virus, _ = big_message(1 << 20, tail=EICAR)  # found only by decoding the base64
    work = tempfile.mkdtemp(prefix="bench-connectors-")
    procs = []
    try:
        # endpoints
        http_port = free_port()
        http_log = os.path.join(work, "endpoint.log")
        with open(http_log, "wb") as log:
            http = subprocess.Popen([sys.executable, os.path.join(HERE, "endpoint.py"),
                                     str(http_port)], stdout=log, stderr=subprocess.STDOUT)
        procs.append(http)
        wait_port(http_port, http, "endpoint.py", http_log)
        script = os.path.join(work, "answer.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho verdict=continue\n")
        os.chmod(script, 0o755)
        db = os.path.join(work, "db")
        os.makedirs(db)
        with open(os.path.join(db, "eicar.ndb"), "w") as f:
            f.write(f"Vps-Test-Eicar:0:*:{EICAR.hex()}\n")
        policy_port, grpc_port = free_port(), free_port()
        upstream = Vpsd(build, work, "upstream",
                        f"[policy]\nlisten = inet:127.0.0.1:{policy_port}\n"
                        f"[grpc]\nlisten = 127.0.0.1:{grpc_port}\n",
                        'data {\n  rule "never" when message.size < 0 => reject\n}\n')
        procs.append(upstream.proc)
        wait_port(policy_port, upstream.proc, "upstream vpsd", upstream.log)
        wait_port(grpc_port, upstream.proc, "upstream vpsd", upstream.log)

        connectors = {
            "test": ("type = test", None),
            "http": (f"type = http\nurl = http://127.0.0.1:{http_port}/check", http.pid),
            "exec": (f"type = exec\ncommand = {script}", "children"),
            # a virus or a limit hit is no clean scan: it must not count as one
            "clamav": (f"type = clamav\nmode = library\ndatabase = {db}\ntimeout = 60s\n"
                       "on_infected = reject\non_limits = tempfail", None),
            "policy": (f"type = policy\naddress = inet:127.0.0.1:{policy_port}", upstream.proc.pid),
            "grpc": (f"type = grpc\naddress = 127.0.0.1:{grpc_port}", upstream.proc.pid),
        }
        rows, scan = {}, {}
        for name in names:
            keys, endpoint = connectors[name]
            v = milter_vpsd(build, work, name, f"[connector {name}]\n{keys}\n",
                            f'data {{\n  rule "c" => call {name}\n}}\n')
            procs.append(v.proc)
            warm_up(v.port, small, f"vpsd with {name}", v.log)
            for n in sessions:
                c0 = cpu(v.proc.pid)
                e0 = (cpu(v.proc.pid, children=True) if endpoint == "children"
                      else cpu(endpoint) if endpoint else 0)
                r = load(v.port, n, small, seconds=seconds)
                r["cpu"] = (cpu(v.proc.pid) - c0) / r["n"]
                e1 = (cpu(v.proc.pid, children=True) if endpoint == "children"
                      else cpu(endpoint) if endpoint else 0)
                r["endpoint"] = (e1 - e0) / r["n"] if endpoint else None
                rows[name, n] = r
            if name in ("test", "clamav"):
                threads = os.cpu_count()  # the library's default scan threads
                load(v.port, 1, big, count=2)
                one = load(v.port, 1, big, count=scans)
                many = load(v.port, threads, big, count=max(1, scans // threads))
                scan[name] = (one, many, threads)
                if name == "clamav":
                    try:
                        load(v.port, 1, virus, count=1)
                    except SystemExit as e:
                        if "answered b'y'" not in str(e) and "answered b'r'" not in str(e):
                            raise
                    else:
                        raise SystemExit("bench-connectors: EICAR at the end of the 1 MB "
                                         "attachment was not found: the scan is not a scan")
            v.stop()

        print(f"== bench-connectors: `data {{ rule \"c\" => call X }}`, {size} byte messages over "
              f"the milter protocol, {seconds:g}s per run ({os.cpu_count()} cores; load "
              f"generator, endpoints and vpsd on the same machine)")
        print(f"{'connector':<9} {'sessions':>8} {'msgs/s':>8} {'EOM p50 µs':>11} "
              f"{'EOM p99 µs':>11} {'added p50':>10} {'added p99':>10} {'vpsd CPU':>9} "
              f"{'endpoint':>9} {'driver':>8}")
        print(f"{'':<9} {'':>8} {'':>8} {'':>11} {'':>11} {'µs':>10} {'µs':>10} "
              f"{'µs/msg':>9} {'µs/msg':>9} {'µs/msg':>8}")
        for name in names:
            for n in sessions:
                r = rows[name, n]
                p50, p99 = pct(r["lats"], 50) * 1e6, pct(r["lats"], 99) * 1e6
                base = rows.get(("test", n))
                if base and name != "test":
                    a50 = f"{p50 - pct(base['lats'], 50) * 1e6:.0f}"
                    a99 = f"{p99 - pct(base['lats'], 99) * 1e6:.0f}"
                else:
                    a50 = a99 = "-"
                ep = "-" if r["endpoint"] is None else f"{r['endpoint'] * 1e6:.0f}"
                print(f"{name:<9} {n:>8} {r['n'] / r['wall']:>8.0f} {p50:>11.0f} {p99:>11.0f} "
                      f"{a50:>10} {a99:>10} {r['cpu'] * 1e6:>9.0f} {ep:>9} "
                      f"{r['driver'] / r['n'] * 1e6:>8.0f}")
        print("endpoint: http = endpoint.py, exec = the /bin/sh children, policy/grpc = the "
              "second vpsd; driver = this load generator")

        if "clamav" in scan and "test" in scan:
            mb = big_size / 1e6
            c1, cn, threads = scan["clamav"]
            t1, tn, _ = scan["test"]
            m_c, m_t = statistics.median(c1["lats"]), statistics.median(t1["lats"])
            print(f"== ClamAV in-process engine (mode library, 1 signature), clean {big_size} byte "
                  f"message (text + base64 attachment), {scans} scans")
            print(f"1 session: EOM {m_c * 1e3:.1f} ms with clamav, {m_t * 1e3:.1f} ms with test "
                  f"-> scan {(m_c - m_t) * 1e3:.1f} ms = {mb / (m_c - m_t):.1f} MB/s "
                  f"(end to end {mb / m_c:.1f} MB/s)")
            print(f"{threads} sessions (= scan threads): {cn['n'] * mb / cn['wall']:.1f} MB/s "
                  f"aggregate with clamav, {tn['n'] * mb / tn['wall']:.1f} MB/s with test")

        if "http" in names or "clamav" in names:
            print(f"== event loop: {SLOW_SESSIONS} sessions waiting at end of message; fresh "
                  f"sessions meanwhile: negotiate + connect reply, and a whole {size} byte message")
            print(f"{'while':<30} {'busy EOM s':>10} {'probes':>6} {'connect p50/max ms':>19} "
                  f"{'message p50/max ms':>19}")
            cases = []
            if "http" in names:
                cases.append(("http", f"type = http\nurl = http://127.0.0.1:{http_port}/slow\n"
                              "timeout = 10s", small, 0, "HTTP calls sleeping 2 s"))
            if "clamav" in names:
                cases.append(("clamav", f"type = clamav\nmode = library\ndatabase = {db}\n"
                              "timeout = 60s", big, 2.0, "1 MB ClamAV scans back to back"))
            for name, keys, busy_msg, busy_seconds, what in cases:
                rules = (f'connect {{\n  rule "probe" when client.ip == 192.0.2.250 => reject\n}}\n'
                         f'data {{\n  rule "c" when client.ip != {PROBE_IP} => call {name}\n}}\n')
                v = milter_vpsd(build, work, "loop-" + name, f"[connector {name}]\n{keys}\n", rules)
                procs.append(v.proc)
                if name == "clamav":
                    warm_up(v.port, small, "vpsd with clamav", v.log)
                idle, probes, busy = responsiveness(v.port, small, busy_msg, busy_seconds)
                v.stop()
                fmt = lambda xs, i: (f"{statistics.median(x[i] for x in xs) * 1e3:.1f} / "
                                     f"{max(x[i] for x in xs) * 1e3:.1f}")
                print(f"{'idle':<30} {'-':>10} {len(idle):>6} {fmt(idle, 0):>19} "
                      f"{fmt(idle, 1):>19}")
                print(f"{what:<30} {statistics.median(busy):>10.3f} {len(probes):>6} "
                      f"{fmt(probes, 0) if probes else '-':>19} "
                      f"{fmt(probes, 1) if probes else '-':>19}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
