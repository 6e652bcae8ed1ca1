#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-milter: what a milter costs Postfix, measured end to end.

Topology (BENCH.md): smtp-source -> sandboxed Postfix -> smtp-sink on
loopback, 5 KB messages, queue on disk (or where BENCH_MILTER_TMP points,
e.g. /dev/shm for the tmpfs profile).  Each setup gets its own sink, its own
Postfix instance and, if it has one, its own milter, all started once; then
rounds run interleaved (for each round, for each session count: A B C ...)
and every ratio is taken against "postfix" inside the same round at the
same session count.  Reported: end-to-end msgs/s (the sink counted every
message), accept msgs/s (smtp-source finished), CPU ms per message of the
Postfix processes, of the milter and of generator + sink, as median [min-max].

A setup is a name, an optional command that starts a milter listening at
{port} (or at the unix socket {sock}), and main.cf extras.  Placeholders in
the command and extras: {port} {sock} {dir} (a private directory) {build}
{src}.  Built-in setups are in SETUPS; more come from --setups-file FILE
(JSON list of {"name", "cmd", "main"}) or --add-setup NAME CMD [KEY=VALUE ...].
With a milter and no smtpd_milters in the extras, smtpd_milters is set to
inet:127.0.0.1:{port} (or unix:{sock} when the command uses {sock}) with
milter_default_action = tempfail, so a broken milter shows as failures.

Environment (defaults in brackets): BENCH_MILTER_ROUNDS [3],
BENCH_MILTER_MSGS [2000], BENCH_MILTER_MSGS_C1 [500] (messages at 1 session),
BENCH_MILTER_SESSIONS [1,10,50], BENCH_MILTER_SETUPS
[postfix,libmilter-all,libmilter-data-eom], BENCH_MILTER_SIZE [5120],
BENCH_MILTER_TMP [system temporary directory], BENCH_MILTER_SETUPS_FILE.
Exit status 1 if any run lost or refused messages.
"""
import argparse, json, os, shlex, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import postfixlib  # noqa: E402
from postfixlib import Postfix, SmtpSink, free_port, wait_listening  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The built-in setups.  vpsd rows are added the same way, e.g.
#   "vpsd": {"cmd": "{build}/vps/cmd/vpsd -c {dir}/vps.conf ...", "main": {...}}
SETUPS = {
    "postfix": {"cmd": None, "main": {}},
    "libmilter-all": {"cmd": "{build}/tests/milters/trivial-milter -p inet:{port}@127.0.0.1",
                      "main": {}},
    "libmilter-data-eom": {"cmd": "{build}/tests/milters/trivial-milter -e -p inet:{port}@127.0.0.1",
                           "main": {}},
    # Not run by default: EOM only over TCP shows the 40 ms stall (MILTER.md).
    "libmilter-eom-stall": {"cmd": "{build}/tests/milters/trivial-milter -E -p inet:{port}@127.0.0.1",
                            "main": {}},
    "libmilter-all-unix": {"cmd": "{build}/tests/milters/trivial-milter -p unix:{sock}", "main": {}},
    # vpsd as the milter: the 20-rule file over every SMTP stage, and
    # an envelope-only rule file (vpsd negotiates headers and body away).
    "vpsd-20": {"cmd": "sh {src}/bench/milter/start-vpsd.sh {build} {dir} {port} "
                       "{src}/bench/milter/rules-20.vsl", "main": {}},
    "vpsd-envelope": {"cmd": "sh {src}/bench/milter/start-vpsd.sh {build} {dir} {port} "
                             "{src}/bench/milter/rules-envelope.vsl", "main": {}},
}
BASELINE = "postfix"


# ------------------------------------------------------------ CPU accounting

def _stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def tree_cpu(root):
    """CPU seconds used so far by root and all its descendants, exited ones
    included: a reaped child's time is in its parent's cutime/cstime, and
    every Postfix daemon is a child of master (no chroot, no other parent)."""
    if root is None:
        return 0.0
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s:
                procs[int(name)] = s
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid not in procs:
            continue
        _, own, reaped = procs[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total / CLK_TCK


def system_busy():
    """Busy CPU seconds of the whole machine (all CPUs, kernel threads and
    neighbours included): a cross-check of the per-process figures."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK


# ---------------------------------------------------------------- one setup

class Setup:
    def __init__(self, name, cmd, main, build, base):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.sock = os.path.join(self.dir, "milter.sock")
        subst = {"port": self.port, "sock": self.sock, "dir": self.dir, "build": build, "src": SRC}
        self.cmd = shlex.split(cmd.format(**subst)) if cmd else None
        self.main = {k: str(v).format(**subst) for k, v in (main or {}).items()}
        if self.cmd and "smtpd_milters" not in self.main:
            self.main["smtpd_milters"] = (f"unix:{self.sock}" if "{sock}" in cmd
                                          else f"inet:127.0.0.1:{self.port}")
            self.main.setdefault("milter_default_action", "tempfail")
        self.uses_sock = bool(cmd) and "{sock}" in cmd
        self.milter = self.sink = self.postfix = None

    def start(self):
        if self.cmd:
            log = open(os.path.join(self.dir, "milter.log"), "wb")
            self.milter = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=self.dir)
            log.close()
            if self.uses_sock:
                deadline = time.time() + 15
                while not os.path.exists(self.sock):
                    if time.time() > deadline or self.milter.poll() is not None:
                        raise RuntimeError(f"{self.name}: milter did not create {self.sock}")
                    time.sleep(0.02)
                # smtpd runs as the postfix user; the milter may run as root.
                os.chmod(self.dir, 0o755)
                os.chmod(self.sock, 0o777)
            else:
                wait_listening(self.port, 15, alive=lambda: self.milter.poll() is None)
        os.makedirs(os.path.join(self.dir, "sink"))
        self.sink = SmtpSink(os.path.join(self.dir, "sink"), dump=False, counters=True).start()
        self.postfix = Postfix(os.path.join(self.dir, "pf"), relay_port=self.sink.port,
                               main_cf_extra=self.main).start()

    def stop(self):
        for obj in (self.postfix, self.sink):
            if obj is not None:
                obj.stop()
        if self.milter is not None and self.milter.poll() is None:
            # libmilter needs 5-15 s for SIGTERM (TESTING.md); ours hold no state.
            self.milter.terminate()
            try:
                self.milter.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.milter.kill()
                self.milter.wait()

    def run(self, sessions, messages, size, timeout):
        """One measured run; returns a dict of figures (error set on failure)."""
        pf, sink = self.postfix, self.sink
        got0 = sink.received()
        cpu_pf0, cpu_mi0 = tree_cpu(pf.master_pid()), tree_cpu(self.milter and self.milter.pid)
        cpu_sink0 = tree_cpu(sink.proc.pid)
        busy0 = system_busy()
        t0 = time.monotonic()
        # Output to a file, not a pipe: we reap it with wait4 (for its rusage)
        # and must not block on a full pipe meanwhile.
        with tempfile.TemporaryFile() as outf:
            src = subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(messages),
                                    "-l", str(size), "-f", "bench@example.com",
                                    "-t", "sink@example.org", f"127.0.0.1:{pf.port}"],
                                   stdout=outf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(src.pid, 0)
            src.returncode = os.waitstatus_to_exitcode(status)
            outf.seek(0)
            out = outf.read()
        t_accept = time.monotonic() - t0
        res = {"setup": self.name, "sessions": sessions, "messages": messages,
               "accept_s": t_accept}
        if src.returncode != 0:
            res["error"] = f"smtp-source exited {src.returncode}: {out.decode(errors='replace')[-300:]}"
        deadline = t0 + timeout
        while sink.received() - got0 < messages and time.monotonic() < deadline:
            time.sleep(0.01)
        t_end = time.monotonic() - t0
        busy = system_busy() - busy0
        got = sink.received() - got0
        if got < messages and "error" not in res:
            res["error"] = f"sink received {got} of {messages} within {timeout}s"
        try:
            pf.wait_queue_empty(timeout=30)
        except AssertionError as e:
            res.setdefault("error", str(e))
        res.update({
            "e2e_s": t_end,
            "received": got,
            "accept_rate": messages / t_accept,
            "e2e_rate": got / t_end,
            "cpu_postfix_ms": (tree_cpu(pf.master_pid()) - cpu_pf0) * 1000 / max(got, 1),
            "cpu_milter_ms": (tree_cpu(self.milter and self.milter.pid) - cpu_mi0) * 1000 / max(got, 1),
            "cpu_gen_sink_ms": ((usage.ru_utime + usage.ru_stime)
                                + tree_cpu(sink.proc.pid) - cpu_sink0) * 1000 / max(got, 1),
            "cpu_system_ms": busy * 1000 / max(got, 1),
        })
        return res


# -------------------------------------------------------------------- report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(xs, spec="{:.0f}"):
    if not xs:
        return "-"
    if len(xs) == 1:
        return spec.format(xs[0])
    return f"{spec.format(med(xs))} [{spec.format(min(xs))}-{spec.format(max(xs))}]"


def report(runs, setups, sessions):
    ok = [r for r in runs if "error" not in r]
    rows = []
    for c in sessions:
        for name in setups:
            mine = [r for r in ok if r["setup"] == name and r["sessions"] == c]
            ratios = []
            for r in mine:
                base = [b for b in ok if b["setup"] == BASELINE and b["sessions"] == c
                        and b["round"] == r["round"]]
                if base and name != BASELINE:
                    ratios.append(r["e2e_rate"] / base[0]["e2e_rate"])
            rows.append((f"c={c}", name, fmt([r["e2e_rate"] for r in mine]),
                         fmt([r["accept_rate"] for r in mine]),
                         fmt(ratios, "{:.2f}") if ratios else ("1" if name == BASELINE else "-"),
                         fmt([r["cpu_postfix_ms"] for r in mine], "{:.2f}"),
                         fmt([r["cpu_milter_ms"] for r in mine], "{:.2f}"),
                         fmt([r["cpu_gen_sink_ms"] for r in mine], "{:.2f}"),
                         fmt([r["cpu_system_ms"] for r in mine], "{:.2f}")))
    head = ("sess", "setup", "msgs/s e2e", "msgs/s accept", "ratio to postfix",
            "CPU ms/msg Postfix", "milter", "gen+sink", "whole box")
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    print(line(head))
    for row in rows:
        print(line(row))
    print("values: median [min-max] over rounds; ratio = e2e msgs/s / postfix's in the same round;\n"
          "CPU from /proc (10 ms ticks): Postfix = master and every daemon it forked, milter = its\n"
          "process tree, gen+sink = smtp-source and smtp-sink, whole box = all busy CPU of the\n"
          "machine during the run (kernel threads and neighbours included)")
    bad = [r for r in runs if "error" in r]
    for r in bad:
        print(f"FAILED run: round {r['round']} {r['setup']} c={r['sessions']}: {r['error']}")
    return not bad


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=env("BENCH_BUILD", os.path.join(SRC, "build")))
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_MILTER_ROUNDS", "3")))
    ap.add_argument("--messages", type=int, default=int(env("BENCH_MILTER_MSGS", "2000")))
    ap.add_argument("--messages-c1", type=int, default=int(env("BENCH_MILTER_MSGS_C1", "500")))
    ap.add_argument("--sessions", default=env("BENCH_MILTER_SESSIONS", "1,10,50"))
    ap.add_argument("--size", type=int, default=int(env("BENCH_MILTER_SIZE", "5120")))
    ap.add_argument("--setups", default=env("BENCH_MILTER_SETUPS",
                                            "postfix,libmilter-all,libmilter-data-eom,vpsd-20,vpsd-envelope"))
    ap.add_argument("--setups-file", default=env("BENCH_MILTER_SETUPS_FILE"))
    ap.add_argument("--add-setup", nargs="+", action="append", default=[],
                    metavar=("NAME CMD", "KEY=VALUE"))
    ap.add_argument("--tmp", default=env("BENCH_MILTER_TMP"))
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--json", help="also write every run to this file")
    a = ap.parse_args()

    table = dict(SETUPS)
    if a.setups_file:
        with open(a.setups_file) as f:
            for s in json.load(f):
                table[s["name"]] = {"cmd": s.get("cmd"), "main": s.get("main", {})}
    extra = []
    for spec in a.add_setup:
        if len(spec) < 2:
            ap.error("--add-setup NAME CMD [KEY=VALUE ...]")
        table[spec[0]] = {"cmd": spec[1] or None,
                          "main": dict(kv.split("=", 1) for kv in spec[2:])}
        extra.append(spec[0])
    names = [n for n in a.setups.split(",") if n] + [n for n in extra if n not in a.setups.split(",")]
    for n in names:
        if n not in table:
            ap.error(f"unknown setup {n!r}; known: {', '.join(table)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    sessions = [int(c) for c in a.sessions.split(",") if c]
    build = os.path.abspath(a.build)

    base = tempfile.mkdtemp(prefix="bench-milter-", dir=a.tmp)
    fs = subprocess.run(["stat", "-f", "-c", "%T", base], capture_output=True, text=True).stdout.strip()
    print(f"== bench-milter: {', '.join(names)}; {a.rounds} rounds; sessions {a.sessions}; "
          f"{a.messages} messages ({a.messages_c1} at 1 session) of {a.size} bytes; "
          f"queue on {fs} ({base}); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
          flush=True)
    setups = {}
    runs = []
    try:
        for n in names:
            setups[n] = Setup(n, table[n]["cmd"], table[n]["main"], build, base)
            setups[n].start()
        for n in names:  # warm up every instance: processes forked, caches filled
            w = setups[n].run(10, a.warmup, a.size, 60)
            print(f"# warm-up {n}: {w['e2e_rate']:.0f} msgs/s", flush=True)
            if "error" in w:
                raise RuntimeError(f"warm-up of {n} failed: {w['error']}")
        for rnd in range(1, a.rounds + 1):
            for c in sessions:
                msgs = a.messages_c1 if c == 1 else a.messages
                for n in names:
                    r = setups[n].run(c, msgs, a.size, timeout=max(120, msgs / 5))
                    r["round"] = rnd
                    runs.append(r)
                    print(f"# round {rnd} c={c} {n}: {r['e2e_rate']:.0f} msgs/s e2e, "
                          f"{r['accept_rate']:.0f} accept, CPU ms/msg postfix "
                          f"{r['cpu_postfix_ms']:.2f} milter {r['cpu_milter_ms']:.2f}"
                          + (f"  ERROR {r['error']}" if "error" in r else ""), flush=True)
    finally:
        for s in setups.values():
            s.stop()
        postfixlib.stop_all()
        subprocess.run(["rm", "-rf", base])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)
    good = report(runs, names, sessions)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
