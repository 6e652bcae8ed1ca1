#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""profile_vsmtpd.py: where vsmtpd spends its time on bench-mta's workload.

  profile_vsmtpd.py [--build BUILD] [--tool callgrind|perf] [--messages N]
                    [--warmup W] [--size BYTES] [--sessions S] [--top K]

Starts vsmtpd as bench_mta.py does (same vps.conf, rules-small.vsl, maildir
delivery, queue under --tmp), sends W messages with smtp-source to warm it
up, then N measured messages, and waits until every one is in the maildir
and the queue is empty.

  callgrind  vsmtpd runs under valgrind --tool=callgrind; the counters are
             dumped (and zeroed) after the warm-up and again after the N
             messages, so the second dump covers exactly the measured
             window: instructions per message (repeatable: BENCH.md's CI
             regression measure; this VM has no hardware counters) and the
             top functions, self and inclusive (callgrind_annotate).
  perf       perf record -e cpu-clock (a software clock: no PMU here) on the
             running vsmtpd during the N messages; the top symbols by self
             time and by shared object.

The raw profile stays in the printed directory with --keep.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mtalib  # noqa: E402
from mtalib import postfixlib  # noqa: E402


def send(v, n, size, sessions, timeout):
    """n messages through smtp-source; waits until all are in the maildir."""
    before = mtalib.count_files(v.new_dir)
    p = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size),
                        "-f", mtalib.SENDER, "-t", mtalib.RCPT, f"127.0.0.1:{v.port}"],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"smtp-source exited {p.returncode}: {p.stdout[-300:]}{p.stderr[-300:]}")
    deadline = time.time() + timeout
    while mtalib.count_files(v.new_dir) - before < n:
        if time.time() > deadline:
            raise RuntimeError(f"only {mtalib.count_files(v.new_dir) - before} of {n} delivered")
        time.sleep(0.2)
    v.wait_idle(timeout)


def callgrind_dump(pid, outdir, label, timeout=120):
    """Ask callgrind for a dump; returns the new dump file once complete."""
    old = set(os.listdir(outdir))
    subprocess.run(["callgrind_control", f"--dump={label}", str(pid)], capture_output=True,
                   text=True, timeout=timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = [n for n in set(os.listdir(outdir)) - old if n.startswith("callgrind.out")]
        for n in new:
            path = os.path.join(outdir, n)
            with open(path, "rb") as f:
                data = f.read()
            if b"\ntotals:" in data or b"\nsummary:" in data:
                return path
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump {label!r} within {timeout}s")


def annotate(path, top, inclusive):
    """The top rows of callgrind_annotate's function table."""
    args = ["callgrind_annotate", "--threshold=100", "--auto=no"]
    if inclusive:
        args.append("--inclusive=yes")
    p = subprocess.run(args + [path], capture_output=True, text=True, timeout=300)
    lines = p.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith("file:function"):
            rows = [l for l in lines[i + 2:] if l.strip()]
            return "\n".join([line] + rows[:top])
    return p.stdout + p.stderr


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    return 0


def main():
    src = os.path.dirname(os.path.dirname(HERE))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(src, "build"))
    ap.add_argument("--tool", choices=("callgrind", "perf"), default="callgrind")
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tmp", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    binary = os.path.join(os.path.abspath(a.build), "mta", "vsmtpd")
    if not os.access(binary, os.X_OK):
        print(f"profile_vsmtpd: {binary} is missing (build first)", file=sys.stderr)
        return 1
    with open(os.path.join(HERE, "rules-small.vsl")) as f:
        rules = f.read()
    base = tempfile.mkdtemp(prefix="vsmtpd-profile-", dir=a.tmp)
    os.chmod(base, 0o755)
    prof = os.path.join(base, "profile")
    os.makedirs(prof)
    wrapper = []
    slow = 1
    if a.tool == "callgrind":
        wrapper = ["valgrind", "--tool=callgrind", "--vgdb=yes",
                   f"--callgrind-out-file={prof}/callgrind.out.%p"]
        slow = 50
    v = mtalib.Vsmtpd(binary, os.path.join(base, "vsmtpd"), rules, workers=a.workers,
                      log_level="warning", wrapper=wrapper)
    perf = None
    try:
        v.start(timeout=30 * (slow if slow == 1 else 4))
        send(v, a.warmup, a.size, a.sessions, 60 * slow)
        if a.tool == "callgrind":
            callgrind_dump(v.proc.pid, prof, "warmup")
        else:
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g",
                                     "-p", str(v.proc.pid), "-o", f"{prof}/perf.data"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
        cpu0 = mtalib.process_cpu(v.proc.pid)
        t0 = time.monotonic()
        send(v, a.messages, a.size, a.sessions, 60 * slow)
        wall = time.monotonic() - t0
        cpu = mtalib.process_cpu(v.proc.pid) - cpu0
        print(f"== vsmtpd {a.tool}: {a.messages} messages of {a.size} bytes over {a.sessions} "
              f"sessions after {a.warmup} warm-up; {a.messages / wall:.0f} msgs/s, "
              f"CPU {cpu * 1000 / a.messages:.2f} ms/msg (under the tool)")
        if a.tool == "callgrind":
            path = callgrind_dump(v.proc.pid, prof, "measured")
            ir = total_ir(path)
            print(f"instructions per message: {ir / a.messages:,.0f}  (total {ir:,} Ir)")
            print("\n-- self cost")
            print(annotate(path, a.top, False))
            print("\n-- inclusive cost")
            print(annotate(path, a.top, True))
        else:
            perf.send_signal(2)
            perf.wait(timeout=60)
            for sort in ("dso", "symbol"):
                p = subprocess.run(["perf", "report", "-i", f"{prof}/perf.data", "--stdio",
                                    "--no-children", "--sort", sort, "-g", "none",
                                    "--percent-limit", "0.7"],
                                   capture_output=True, text=True, timeout=300)
                print(f"\n-- perf by {sort}")
                rows = [l for l in p.stdout.splitlines() if l.strip() and not l.startswith("#")]
                print("\n".join(rows[:a.top]))
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
            perf.wait()
        v.stop(timeout=120)
        postfixlib.stop_all()
        if a.keep:
            print(f"# kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
