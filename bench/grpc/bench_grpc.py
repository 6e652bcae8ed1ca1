#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-grpc: vps.v1.Policy/Check calls per second against vpsd.

vpsd runs with the 20-rule file bench/grpc/rules-20.vsl and [grpc] listen;
bench/grpc/grpc-load (C, on vps/grpc-core.h's client side, one channel)
drives it in rounds: closed loop with 1 and 64 calls in flight (each on
its own session: connect and helo once, then mail, rcpt, rcpt), then an
open loop at half the best 64-in-flight rate for the latency (calls
started on a 1 ms tick over 512 sessions, so none waits for a free one).  Reported:
calls/s, p50/p99/p99.9 latency, vpsd's CPU per call (utime + stime of
/proc/PID/stat over the run).  Goals: >= 25,000 calls/s with 64 in
flight; p99 < 5 ms at half that rate.

Environment: BENCH_GRPC_ROUNDS [3], BENCH_GRPC_SECONDS [4] (per run),
BENCH_GRPC_INFLIGHT [1,64], BENCH_GRPC_WORKERS [vpsd's default: cores].
"""
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
env = os.environ.get
TICK = os.sysconf("SC_CLK_TCK")
OPEN_LOOP_SESSIONS = 512


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def load(build, port, inflight, seconds, rate=0):
    cmd = [os.path.join(build, "bench", "grpc", "grpc-load"), f"127.0.0.1:{port}",
           str(inflight), str(seconds)] + ([str(int(rate))] if rate else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise SystemExit(f"grpc-load failed: {p.stderr.strip()}")
    return {k: float(v) for k, v in (line.split() for line in p.stdout.splitlines())}


def fmt(xs, spec="{:.0f}"):
    if len(xs) == 1:
        return spec.format(xs[0])
    return f"{spec.format(statistics.median(xs))} [{spec.format(min(xs))}-{spec.format(max(xs))}]"


def main():
    build = os.path.abspath(sys.argv[1])
    rounds = int(env("BENCH_GRPC_ROUNDS", "3"))
    seconds = float(env("BENCH_GRPC_SECONDS", "4"))
    inflights = [int(x) for x in env("BENCH_GRPC_INFLIGHT", "1,64").split(",")]
    work = tempfile.mkdtemp(prefix="bench-grpc-")
    port = free_port()
    shutil.copy(os.path.join(HERE, "rules-20.vsl"), os.path.join(work, "rules.vsl"))
    workers = env("BENCH_GRPC_WORKERS")
    with open(os.path.join(work, "vps.conf"), "w") as f:
        f.write(f"[vpsd]\nrules = rules.vsl\n{'workers = ' + workers if workers else ''}\n"
                f"[grpc]\nlisten = 127.0.0.1:{port}\n[log]\nlevel = warning\n"
                "[quarantine]\ndir = quarantine\nnames = bench\n")
    log = open(os.path.join(work, "vpsd.log"), "wb")
    vpsd = subprocess.Popen([os.path.join(build, "vps", "cmd", "vpsd"), "-c",
                             os.path.join(work, "vps.conf")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or vpsd.poll() is not None:
                    raise SystemExit("bench-grpc: vpsd did not start; see " + log.name)
                time.sleep(0.05)
        rows = {n: dict(rate=[], p50=[], p99=[], p999=[], cpu=[]) for n in inflights}
        for _ in range(rounds):
            for n in inflights:
                c0 = cpu_seconds(vpsd.pid)
                r = load(build, port, n, seconds)
                c1 = cpu_seconds(vpsd.pid)
                row = rows[n]
                row["rate"].append(r["calls_per_s"])
                row["p50"].append(r["p50_us"])
                row["p99"].append(r["p99_us"])
                row["p999"].append(r["p999_us"])
                row["cpu"].append((c1 - c0) * 1e6 / max(r["calls"], 1))
        print(f"== bench-grpc: Check on one channel, 20-rule file, {rounds} rounds of {seconds:g}s "
              f"({os.cpu_count()} cores, client and vpsd on the same machine)")
        print(f"{'in flight':>9}  {'calls/s':>22}  {'p50 µs':>16}  {'p99 µs':>16}  "
              f"{'p99.9 µs':>16}  {'vpsd CPU µs/call':>18}")
        for n in inflights:
            row = rows[n]
            print(f"{n:>9}  {fmt(row['rate']):>22}  {fmt(row['p50']):>16}  {fmt(row['p99']):>16}  "
                  f"{fmt(row['p999']):>16}  {fmt(row['cpu'], '{:.1f}'):>18}")
        best = max(rows[max(inflights)]["rate"])
        half = best / 2
        p99s = []
        lates = 0
        for _ in range(rounds):
            # enough sessions that a burst never finds them all busy
            r = load(build, port, OPEN_LOOP_SESSIONS, seconds, rate=half)
            p99s.append(r["p99_us"])
            lates += int(r["late"])
        print(f"open loop at {half:.0f} calls/s (half the best {max(inflights)}-in-flight rate): "
              f"p99 {fmt(p99s)} µs, {lates} calls late")
        rate64 = statistics.median(rows[max(inflights)]["rate"])
        print(f"goal >= 25,000 calls/s at {max(inflights)} in flight: "
              f"{'met' if rate64 >= 25000 else 'NOT met'} ({rate64:.0f})")
        p99 = statistics.median(p99s)
        print(f"goal p99 < 5 ms at half the rate: {'met' if p99 < 5000 else 'NOT met'} "
              f"({p99 / 1000:.2f} ms)")
    finally:
        vpsd.terminate()
        vpsd.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
