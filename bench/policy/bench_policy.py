#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-policy: vpsd as a Postfix policy service (BENCH.md's method).

1. vpsd alone: bench/policy/policy-load (C, closed loop, epoll) against vpsd
   with the 20-rule file bench/policy/rules-20.vsl and against
   trivial-policy (answers DUNNO, no parsing), interleaved in rounds, at 1
   and 64 connections, two request mixes: "rcpt" (one RCPT request per
   message, each a new SMTP session: Postfix's default smtpd_delay_reject =
   yes, the service in smtpd_recipient_restrictions — vpsd runs connect,
   helo, mail and rcpt rules on it) and "full" (CONNECT, EHLO, MAIL, RCPT,
   DATA, END-OF-MESSAGE per message).  Reported: requests/s, p50/p99 µs,
   CPU µs per request of the server.  Goal: >= 30,000 req/s at 64
   connections with the 20-rule file.
2. Postfix + vpsd vs Postfix + trivial-policy (and Postfix alone) end to
   end, by bench/milter/bench_milter.py's machinery (setups passed with
   --setups-file; the policy service in smtpd_recipient_restrictions), and
   the ratio vpsd / trivial inside each round.  Goal: >= 0.95.

Environment: BENCH_POLICY_ROUNDS [3], BENCH_POLICY_SECONDS [4] (per load
run), BENCH_POLICY_CONNS [1,64], BENCH_POLICY_MIXES [rcpt,full],
BENCH_POLICY_PF_SESSIONS [1,10], BENCH_POLICY_PF_MSGS [2000],
BENCH_POLICY_PF_ROUNDS [3], BENCH_POLICY_SKIP_POSTFIX (set: part 1 only).
"""
import json, os, shlex, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "bench", "milter"))
from postfixlib import free_port, wait_listening  # noqa: E402
from bench_milter import tree_cpu  # noqa: E402

env = os.environ.get


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(xs, spec="{:.0f}"):
    if not xs:
        return "-"
    if len(xs) == 1:
        return spec.format(xs[0])
    return f"{spec.format(med(xs))} [{spec.format(min(xs))}-{spec.format(max(xs))}]"


class Server:
    def __init__(self, name, cmd, base):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.cmd = [c.format(port=self.port, dir=self.dir) for c in cmd]
        log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)
        wait_listening(self.port, 15, alive=lambda: self.proc.poll() is None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load(build, server, conns, seconds, mix):
    cpu0 = tree_cpu(server.proc.pid)
    p = subprocess.run([os.path.join(build, "bench", "policy", "policy-load"), "127.0.0.1",
                        str(server.port), str(conns), str(seconds), mix],
                       capture_output=True, text=True, timeout=seconds + 60)
    cpu = tree_cpu(server.proc.pid) - cpu0
    r = dict(line.split() for line in p.stdout.splitlines() if line.strip())
    r = {k: float(v) for k, v in r.items()}
    r["cpu_us"] = cpu * 1e6 / max(r.get("requests", 1), 1)
    if p.returncode != 0 or r.get("errors", 1) > 0:
        r["error"] = f"policy-load exited {p.returncode}: {p.stdout[-300:]} {p.stderr[-300:]}"
    return r


def part_alone(build, base):
    rounds = int(env("BENCH_POLICY_ROUNDS", "3"))
    seconds = float(env("BENCH_POLICY_SECONDS", "4"))
    conns = [int(c) for c in env("BENCH_POLICY_CONNS", "1,64").split(",")]
    mixes = env("BENCH_POLICY_MIXES", "rcpt,full").split(",")
    servers = {
        "vpsd-20": Server("vpsd-20", ["sh", f"{SRC}/bench/policy/start-vpsd.sh", build, "{dir}",
                                      "{port}", f"{SRC}/bench/policy/rules-20.vsl"], base),
        "trivial": Server("trivial", [os.path.join(build, "bench", "policy", "trivial-policy"),
                                      "{port}"], base),
    }
    print(f"== bench-policy: vpsd alone (20 rules) vs trivial DUNNO server; {rounds} rounds of "
          f"{seconds:.0f}s; connections {conns}; mixes {mixes}; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    runs = []
    ok = True
    try:
        for name, s in servers.items():  # warm-up
            load(build, s, 8, 1, "rcpt")
        for rnd in range(1, rounds + 1):
            for mix in mixes:
                for c in conns:
                    for name, s in servers.items():
                        r = load(build, s, c, seconds, mix)
                        r.update(server=name, conns=c, mix=mix, round=rnd)
                        runs.append(r)
                        print(f"# round {rnd} {mix} c={c} {name}: {r.get('req_per_s', 0):.0f} req/s"
                              f" p50 {r.get('p50_us', 0):.0f} µs p99 {r.get('p99_us', 0):.0f} µs"
                              f" cpu {r['cpu_us']:.1f} µs/req"
                              + (f"  ERROR {r['error']}" if "error" in r else ""), flush=True)
                        ok &= "error" not in r
    finally:
        for s in servers.values():
            s.stop()
    head = ("mix", "conns", "server", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/req")
    rows = []
    for mix in mixes:
        for c in conns:
            for name in servers:
                mine = [r for r in runs if r["server"] == name and r["conns"] == c
                        and r["mix"] == mix and "error" not in r]
                rows.append((mix, str(c), name, fmt([r["req_per_s"] for r in mine]),
                             fmt([r["p50_us"] for r in mine]), fmt([r["p99_us"] for r in mine]),
                             fmt([r["p999_us"] for r in mine]),
                             fmt([r["cpu_us"] for r in mine], "{:.1f}")))
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print("values: median [min-max] over rounds; CPU of the server process (10 ms ticks);\n"
          "the generator runs on the same 2 cores")
    for mix in mixes:
        best = [r["req_per_s"] for r in runs if r["server"] == "vpsd-20" and r["mix"] == mix
                and r["conns"] == max(conns) and "error" not in r]
        if best:
            print(f"goal >= 30,000 req/s at {max(conns)} connections ({mix}): "
                  f"{'met' if med(best) >= 30000 else 'NOT met'} ({med(best):.0f})")
    return ok


def part_postfix(build, base):
    setups = [
        {"name": "policy-trivial",
         "cmd": "{build}/bench/policy/trivial-policy {port}",
         "main": {"smtpd_milters": "",
                  "smtpd_recipient_restrictions":
                      "check_policy_service inet:127.0.0.1:{port}, permit_mynetworks, "
                      "reject_unauth_destination"}},
        {"name": "vpsd-policy",
         "cmd": "sh {src}/bench/policy/start-vpsd.sh {build} {dir} {port} "
                "{src}/bench/policy/rules-20.vsl",
         "main": {"smtpd_milters": "",
                  "smtpd_recipient_restrictions":
                      "check_policy_service inet:127.0.0.1:{port}, permit_mynetworks, "
                      "reject_unauth_destination"}},
    ]
    sf = os.path.join(base, "setups.json")
    out = os.path.join(base, "runs.json")
    with open(sf, "w") as f:
        json.dump(setups, f)
    print("== bench-policy: Postfix + vpsd (20 rules) vs Postfix + trivial policy server "
          "(bench/milter/bench_milter.py machinery; the 'milter' CPU column is the policy "
          "server's)", flush=True)
    p = subprocess.run([sys.executable, os.path.join(SRC, "bench", "milter", "bench_milter.py"),
                        "--build", build, "--setups", "postfix,policy-trivial,vpsd-policy",
                        "--setups-file", sf, "--json", out,
                        "--sessions", env("BENCH_POLICY_PF_SESSIONS", "1,10"),
                        "--messages", env("BENCH_POLICY_PF_MSGS", "2000"),
                        "--rounds", env("BENCH_POLICY_PF_ROUNDS", "3")])
    ok = p.returncode == 0
    try:
        runs = json.load(open(out))
    except (OSError, ValueError):
        print("bench-policy: no runs from bench_milter.py")
        return False
    good = [r for r in runs if "error" not in r]
    for c in sorted({r["sessions"] for r in good}):
        ratios = []
        for rnd in sorted({r["round"] for r in good}):
            v = [r for r in good if r["setup"] == "vpsd-policy" and r["sessions"] == c
                 and r["round"] == rnd]
            t = [r for r in good if r["setup"] == "policy-trivial" and r["sessions"] == c
                 and r["round"] == rnd]
            if v and t:
                ratios.append(v[0]["e2e_rate"] / t[0]["e2e_rate"])
        if ratios:
            print(f"c={c}: Postfix+vpsd / Postfix+trivial (e2e msgs/s, same round): "
                  f"{fmt(ratios, '{:.3f}')}; goal >= 0.95: "
                  f"{'met' if med(ratios) >= 0.95 else 'NOT met'}")
    return ok


def main():
    build = os.path.abspath(env("BENCH_BUILD", sys.argv[1] if len(sys.argv) > 1
                                else os.path.join(SRC, "build")))
    base = tempfile.mkdtemp(prefix="bench-policy-")
    try:
        ok = part_alone(build, base)
        if not env("BENCH_POLICY_SKIP_POSTFIX"):
            ok &= part_postfix(build, base)
    finally:
        subprocess.run(["rm", "-rf", base])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
