#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-mta: vsmtpd against Postfix, receiving into a durable queue and delivering into maildir or relaying.

Topology (BENCH.md): smtp-source -> server under test -> maildir, on
loopback, ports and directories picked at run time.  The servers:
  postfix  sandboxed Postfix 3.7 (tests/integration/postfixlib.py), its normal
           queue (cleanup fsyncs before the 250), virtual(8) delivering every
           bench.test recipient into DIR/vmail/bench.test/mail/ (fsync, link)
  vsmtpd   BUILD/mta/vsmtpd, [vpsd] workers = 2, the small rule file
           bench/mta/rules-small.vsl (a relay check, as Postfix's default
           relay restrictions), [delivery] default = maildir:DIR/vmail/%d/%l
Profiles: "disk" (queues and maildirs under BENCH_MTA_DISK_DIR, /var/tmp:
the durability profile, fsync reaches the disk) and "tmpfs" (/dev/shm: CPU).
Relay profiles (issue 9's end-to-end relay) "relay-disk" and "relay-tmpfs":
smtp-source -> server -> smtp-sink, each server with its own smtp-sink -c on
a free port (Postfix: relayhost = [127.0.0.1]:SINKPORT, smtp(8); vsmtpd:
[delivery] default = relay:[127.0.0.1]:SINKPORT); end-to-end = the sink's
message counter reached N, and it must equal N once the queue drained.
BENCH_MTA_MODE picks the default profiles: maildir (disk,tmpfs), relay
(relay-disk), all (disk,tmpfs,relay-disk; the default).

Per profile both servers start once and are warmed up; then rounds run
interleaved (round r: for each size and session count: postfix, vsmtpd) and
every ratio is taken inside its round.  A run is timed from the start of
smtp-source to the moment the last message is linked into new/ (inotify),
and the maildir is then counted: end-to-end msgs/s; smtp-source's own wall
time gives the accept rate.  Before each run the maildir is emptied and the
file system synced, so no run pays for the previous one's write-back.
CPU per message from /proc: Postfix = master and every daemon it forked
(exited ones through master's counters), split by daemon name; vsmtpd = its
process, split by thread name; gen = smtp-source; box = all busy CPU.

Then, per profile, an open-loop latency run at BENCH_MTA_LAT_FRACTION (0.3)
of Postfix's measured capacity (bench/mta/smtpload.py: p50/p99/p99.9 from the
scheduled start to the 250), and once vsmtpd's memory with
BENCH_MTA_RSS_SESSIONS (1000) idle sessions after EHLO and MAIL (goal: RSS
under 100 MB).

Environment [default]: BENCH_ROUNDS [5], BENCH_MSGS [5000] (messages per
run of small messages), BENCH_MSGS_LARGE [BENCH_MSGS/5] (messages over
16 KB), BENCH_MTA_SIZES [5120,102400], BENCH_MTA_SESSIONS [10,50],
BENCH_MTA_MODE [all], BENCH_MTA_PROFILES [from the mode], BENCH_MTA_DISK_DIR [/var/tmp],
BENCH_MTA_SERVERS [postfix,vsmtpd], BENCH_MTA_RULES [bench/mta/rules-small.vsl],
BENCH_MTA_WORKERS [2], BENCH_MTA_LOG_LEVEL [info], BENCH_MTA_LAT_FRACTION [0.3],
BENCH_MTA_LAT_RATE [from the fraction], BENCH_MTA_LAT_SECONDS [15],
BENCH_MTA_LAT_ROUNDS [2], BENCH_MTA_RSS_SESSIONS [1000] (0: skip),
BENCH_MTA_JSON [none: file for every run's figures], BENCH_MTA_KEEP (set:
keep the directories and print where).
Exit status 1 if a run lost, duplicated or refused messages or a server failed.
"""
import argparse, json, os, select, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mtalib  # noqa: E402
from mtalib import postfixlib  # noqa: E402
from bench_milter import system_busy  # noqa: E402
from smtpload import percentile  # noqa: E402

# BENCH_MTA_MODE -> default BENCH_MTA_PROFILES.  "relay-X": smtp-source ->
# server -> smtp-sink (issue 9's end-to-end relay), queues under X's directory.
MODES = {"maildir": "disk,tmpfs", "relay": "relay-disk", "all": "disk,tmpfs,relay-disk"}
SMALL_LIMIT = 16 * 1024  # messages up to this size use BENCH_MSGS, larger BENCH_MSGS_LARGE
_children = []  # load generators running now, killed on the way out


def env(name, default):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


def size_label(size):
    return f"{size // 1024}K" if size % 1024 == 0 else f"{size}B"


def conf_label(size, sessions):
    return f"{size_label(size)}/{sessions}s"


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                          text=True).stdout.strip()


# ------------------------------------------------------------- one timed run

def timed_run(server, sessions, messages, size, timeout):
    """smtp-source sends messages over sessions parallel sessions (a new
    connection per message, as smtp-source without -d); returns the run's
    figures, with "error" set when anything was lost or refused."""
    server.clear_maildir()
    os.sync()
    watch = server.watch()
    res = {"server": server.name, "sessions": sessions, "messages": messages, "size": size}
    sampler = server.sampler().start()
    cpu0, busy0, sink0 = server.cpu_total(), system_busy(), server.sink_cpu()
    t0 = time.monotonic()
    out = tempfile.TemporaryFile()
    src = subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(messages),
                            "-l", str(size), "-f", mtalib.SENDER, "-t", mtalib.RCPT,
                            f"127.0.0.1:{server.port}"],
                           stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _children.append(src)
    pidfd = os.pidfd_open(src.pid)
    t_accept = t_done = None
    usage = None
    deadline = t0 + timeout
    try:
        while t_accept is None or t_done is None:
            now = time.monotonic()
            if now >= deadline or not server.alive():
                break
            fds = [watch] + ([pidfd] if t_accept is None else [])
            ready, _, _ = select.select(fds, [], [], min(1.0, deadline - now))
            now = time.monotonic()
            if watch in ready and watch.read() >= messages and t_done is None:
                t_done = now
            if pidfd in ready:
                _, status, usage = os.wait4(src.pid, 0)
                src.returncode = os.waitstatus_to_exitcode(status)
                t_accept = now
                if src.returncode != 0:
                    # Whatever was refused will never arrive: a short grace only.
                    deadline = min(deadline, now + 10)
    finally:
        os.close(pidfd)
        watch.close()
        if t_accept is None:
            src.kill()
            _, status, usage = os.wait4(src.pid, 0)
            src.returncode = os.waitstatus_to_exitcode(status)
        _children.remove(src)
    busy = system_busy() - busy0
    if not server.alive():
        res["error"] = f"{server.name} died during the run: {server.log_tail(600)}"
        res["fatal"] = True
    out.seek(0)
    text = out.read().decode("utf-8", "replace")
    out.close()
    if src.returncode != 0:
        res.setdefault("error", f"smtp-source exited {src.returncode}: {text[-300:]}")
    elif t_accept is None:
        res.setdefault("error", f"smtp-source still running after {timeout:.0f}s")
    if watch.overflow:
        res.setdefault("error", "inotify queue overflowed: timing unreliable")
    try:
        if server.alive():
            server.wait_idle(60)
    except AssertionError as e:
        res.setdefault("error", str(e))
    # CPU after the queue drained: the work that follows the maildir link
    # (Postfix's qmgr, vsmtpd's spool clean-up) belongs to the message too.
    cpu = server.cpu_total() - cpu0
    parts = sampler.stop()
    got = server.delivered()
    if got != messages:
        res.setdefault("error", f"{got} of {messages} messages at the destination"
                       + (" (duplicates)" if got > messages else ""))
    n = max(got, 1)
    t_end = t_done if t_done is not None else time.monotonic()
    res.update({
        "delivered": got,
        "accept_s": (t_accept or time.monotonic()) - t0,
        "e2e_s": t_end - t0,
        "accept_rate": messages / ((t_accept or time.monotonic()) - t0),
        "e2e_rate": got / (t_end - t0),
        "cpu_server_ms": cpu * 1000 / n,
        "cpu_parts_ms": {k: v * 1000 / n for k, v in parts.items()},
        "cpu_unattributed_ms": (cpu - sum(parts.values())) * 1000 / n,
        "cpu_gen_ms": ((usage.ru_utime + usage.ru_stime) * 1000 / n) if usage else None,
        "cpu_box_ms": busy * 1000 / n,
        "cpu_sink_ms": (server.sink_cpu() - sink0) * 1000 / n,
        "rss_kb": server.rss_kb() if server.alive() else None,
    })
    return res


def latency_run(server, rate, count, size):
    server.clear_maildir()
    os.sync()
    cmd = ["/usr/bin/python3", os.path.join(HERE, "smtpload.py"), "latency",
           "--port", str(server.port), "--rate", f"{rate:.3f}", "--count", str(count),
           "--size", str(size)]
    cpu0 = server.cpu_total()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _children.append(p)
    try:
        out, err = p.communicate(timeout=count / rate + 300)
    finally:
        _children.remove(p)
    if p.returncode != 0:
        return {"server": server.name, "error": f"smtpload exited {p.returncode}: {err[-500:]}"}
    r = json.loads(out)
    r["server"] = server.name
    r["cpu_server_ms"] = (server.cpu_total() - cpu0) * 1000 / max(r["ok"], 1)
    if r["errors"]:
        r["error"] = f"{r['errors']} of {count} failed: {r['error_samples']}"
    try:
        server.wait_idle(60)
    except AssertionError as e:
        r.setdefault("error", str(e))
    got = server.delivered()
    if got != r["ok"]:
        r.setdefault("error", f"{got} of {r['ok']} accepted messages at the destination")
    return r


def rss_run(binary, rules, base, n, workers):
    d = tempfile.mkdtemp(prefix="rss-", dir=base)
    v = mtalib.Vsmtpd(binary, d, rules, workers=workers, max_connections=n + 200,
                      log_level="warning")
    try:
        v.start()
        time.sleep(0.5)
        p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "smtpload.py"), "sessions",
                              "--port", str(v.port), "--count", str(n), "--pid", str(v.proc.pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _children.append(p)
        try:
            out, err = p.communicate(timeout=300)
        finally:
            _children.remove(p)
        if p.returncode != 0:
            return {"error": f"smtpload sessions exited {p.returncode}: {err[-500:]}"}
        r = json.loads(out)
        if r["alive"] != n:
            r["error"] = (f"only {r['alive']} of {n} sessions alive "
                          f"(opened {r['opened']}): {r['failed']}; log: {v.log_tail(500)}")
        return r
    finally:
        v.stop()


# -------------------------------------------------------------------- report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(xs, spec="{:.0f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return spec.format(xs[0])
    return f"{spec.format(med(xs))} [{spec.format(min(xs))}-{spec.format(max(xs))}]"


def table(head, rows):
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    print(line(head))
    for r in rows:
        print(line(r))


def ratios(runs, key, profile, size, sessions, invert=False):
    """vsmtpd/postfix of key inside each round (postfix/vsmtpd with invert)."""
    out = []
    ok = [r for r in runs if "error" not in r and r["profile"] == profile
          and r["size"] == size and r["sessions"] == sessions]
    for v in (r for r in ok if r["server"] == "vsmtpd"):
        p = [r for r in ok if r["server"] == "postfix" and r["round"] == v["round"]]
        if p and p[0][key] and v[key]:
            out.append(p[0][key] / v[key] if invert else v[key] / p[0][key])
    return out


def report(runs, lats, rss, profiles, servers, sizes, sessions):
    ok = [r for r in runs if "error" not in r]
    lines = []
    num = lambda v, spec="{:.3f}": "-" if v != v else spec.format(v)
    for prof in [p for p in profiles if any(r["profile"] == p for r in runs + lats)]:
        relay = prof.startswith("relay-")
        print(f"\n-- profile {prof}: msgs/s and CPU ms per message, median [min-max] over rounds"
              + ("; end-to-end = smtp-source -> server -> smtp-sink" if relay else ""))
        rows = []
        for size in sizes:
            for c in sessions:
                for s in servers:
                    mine = [r for r in ok if r["profile"] == prof and r["server"] == s
                            and r["size"] == size and r["sessions"] == c]
                    ra = ratios(runs, "accept_rate", prof, size, c) if s == "vsmtpd" else []
                    re_ = ratios(runs, "e2e_rate", prof, size, c) if s == "vsmtpd" else []
                    rows.append((conf_label(size, c), s,
                                 fmt([r["accept_rate"] for r in mine]),
                                 fmt([r["e2e_rate"] for r in mine]),
                                 fmt(ra, "{:.2f}") if ra else "-", fmt(re_, "{:.2f}") if re_ else "-",
                                 fmt([r["cpu_server_ms"] for r in mine], "{:.2f}"),
                                 fmt([r["cpu_gen_ms"] for r in mine], "{:.2f}"),
                                 fmt([r["cpu_box_ms"] for r in mine], "{:.2f}"))
                                + ((fmt([r.get("cpu_sink_ms") for r in mine], "{:.2f}"),)
                                   if relay else ()))
        table(("config", "server", "accept/s", "e2e/s", "ratio acc", "ratio e2e",
               "CPU server", "CPU gen", "CPU box") + (("CPU sink",) if relay else ()), rows)
        for s in servers:
            mine = [r for r in ok if r["profile"] == prof and r["server"] == s]
            if not mine:
                continue
            comps = {}
            for r in mine:
                for k, v in r["cpu_parts_ms"].items():
                    comps.setdefault(k, {}).setdefault((r["size"], r["sessions"]), []).append(v)
            confs = [(z, c) for z in sizes for c in sessions]
            rows = []
            for k in sorted(comps, key=lambda k: -med(sum(comps[k].values(), []))):
                vals = [med(comps[k].get(cf, [])) for cf in confs]
                if max((v for v in vals if v == v), default=0) < 0.005:
                    continue
                rows.append([k] + [num(v) for v in vals])
            un = [[r["cpu_unattributed_ms"] for r in mine if (r["size"], r["sessions"]) == cf]
                  for cf in confs]
            rows.append(["(exited/unattributed)"] + [num(med(u)) for u in un])
            rows.append(["= total"] + [num(med([r["cpu_server_ms"] for r in mine
                                                if (r["size"], r["sessions"]) == cf]))
                                       for cf in confs])
            print(f"\n   {s} CPU ms/msg by {'daemon' if s == 'postfix' else 'thread'} (median over rounds)")
            table([s + " part"] + [conf_label(*cf) for cf in confs], rows)
        pl = [x for x in lats if x.get("profile") == prof and "error" not in x]
        if pl:
            print("\n   open-loop latency, 5K messages, one session each, from the scheduled start to the 250")
            rows = []
            for s in servers:
                samples = sorted(sum((x["latencies_ms"] for x in pl if x["server"] == s), []))
                if not samples:
                    continue
                q = lambda p: percentile(samples, p)
                mine = [x for x in pl if x["server"] == s]
                rows.append((s, f"{mine[0]['rate']:.0f}", len(samples), f"{q(50):.2f}",
                             f"{q(99):.2f}", f"{q(99.9):.2f}", f"{samples[-1]:.2f}",
                             fmt([x["cpu_server_ms"] for x in mine], "{:.2f}")))
                lines.append(f"mta: latency at {mine[0]['rate']:.0f} msgs/s {s} p50/p99/p99.9 = "
                             f"{q(50):.2f}/{q(99):.2f}/{q(99.9):.2f} ms [{prof}]")
            table(("server", "msgs/s", "samples", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
                   "CPU server"), rows)
        if "vsmtpd" in servers and "postfix" in servers:
            for size in sizes:
                for c in sessions:
                    lab = conf_label(size, c)
                    for key, name in (("accept_rate", "accept ratio"), ("e2e_rate", "e2e ratio"),
                                      ("cpu_server_ms", "CPU per message")):
                        xs = ratios(runs, key, prof, size, c)
                        if xs:
                            lines.append(f"mta: vsmtpd/postfix {name} {lab} = {med(xs):.2f} "
                                         f"({min(xs):.2f}..{max(xs):.2f}) [{prof}]")
    if rss:
        print()
        if "error" in rss:
            lines.append(f"mta: vsmtpd RSS with {rss.get('sessions', '?')} sessions: FAILED {rss['error']}")
        else:
            print(f"   vsmtpd memory: idle {rss['rss_idle_kb'] / 1024:.1f} MB; with {rss['sessions']} "
                  f"sessions (EHLO+MAIL) {rss['rss_sessions_kb'] / 1024:.1f} MB "
                  f"({rss['kb_per_session']:.1f} KB each), threads {rss['threads_sessions']}, "
                  f"fds {rss['fds_sessions']}; after close {rss['rss_after_kb'] / 1024:.1f} MB; "
                  f"peak {rss['hwm_kb'] / 1024:.1f} MB")
            goal = "met" if rss["rss_sessions_kb"] < 100 * 1024 else "NOT met"
            lines.append(f"mta: vsmtpd RSS with {rss['sessions']} sessions = "
                         f"{rss['rss_sessions_kb'] / 1024:.1f} MB, peak {rss['hwm_kb'] / 1024:.1f} MB "
                         f"(goal < 100 MB: {goal})")
    if "vsmtpd" in servers and "postfix" in servers:
        for prof in profiles:
            xs = [(conf_label(z, c), med(ratios(runs, "e2e_rate", prof, z, c)))
                  for z in sizes for c in sessions]
            xs = [(lab, v) for lab, v in xs if v == v]
            if xs:
                worst = min(v for _, v in xs)
                lines.append(f"mta: goal vsmtpd >= 2x postfix e2e msgs/s [{prof}]: "
                             f"{'met' if worst >= 2 else 'NOT met'} (lowest median "
                             f"{worst:.2f} at {min(xs, key=lambda t: t[1])[0]})")
    print("\nvalues: median [min-max] over rounds; ratio = vsmtpd / postfix inside the same round;\n"
          "accept = smtp-source finished, e2e = last message linked into the maildir (relay-*:\n"
          "the sink's counter reached N); CPU in ms per delivered message from /proc (10 ms\n"
          "ticks): server = Postfix master + every daemon it forked or vsmtpd's process, gen =\n"
          "smtp-source, sink = smtp-sink (relay-*), box = every busy CPU of the machine\n")
    for line in lines:
        print(line)
    bad = [r for r in runs + lats if "error" in r] + ([rss] if rss and "error" in rss else [])
    for r in bad:
        where = (f"{r.get('profile', '')} round {r.get('round', '-')} {r.get('server', 'vsmtpd')} "
                 f"{conf_label(r['size'], r['sessions']) if 'size' in r else ''}")
        print(f"FAILED: {where}: {r['error']}")
    return not bad


# ---------------------------------------------------------------------- main

def main():
    src = os.path.dirname(os.path.dirname(HERE))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=env("BENCH_BUILD", os.path.join(src, "build")))
    ap.add_argument("--json", default=env("BENCH_MTA_JSON", None))
    a = ap.parse_args()
    rounds = int(env("BENCH_ROUNDS", "5"))
    msgs = int(env("BENCH_MSGS", "5000"))
    msgs_large = int(env("BENCH_MSGS_LARGE", str(max(100, msgs // 5))))
    sizes = [int(x) for x in env("BENCH_MTA_SIZES", "5120,102400").split(",") if x]
    sessions = [int(x) for x in env("BENCH_MTA_SESSIONS", "10,50").split(",") if x]
    mode = env("BENCH_MTA_MODE", "all")
    if mode not in MODES:
        ap.error(f"unknown BENCH_MTA_MODE {mode!r} ({', '.join(MODES)})")
    profiles = [x for x in env("BENCH_MTA_PROFILES", MODES[mode]).split(",") if x]
    servers = [x for x in env("BENCH_MTA_SERVERS", "postfix,vsmtpd").split(",") if x]
    workers = int(env("BENCH_MTA_WORKERS", "2"))
    lat_fraction = float(env("BENCH_MTA_LAT_FRACTION", "0.3"))
    lat_rate_fixed = float(env("BENCH_MTA_LAT_RATE", "0"))
    lat_seconds = float(env("BENCH_MTA_LAT_SECONDS", "15"))
    lat_rounds = int(env("BENCH_MTA_LAT_ROUNDS", "2"))
    rss_sessions = int(env("BENCH_MTA_RSS_SESSIONS", "1000"))
    dirs = {"disk": env("BENCH_MTA_DISK_DIR", "/var/tmp"), "tmpfs": "/dev/shm"}
    for p in profiles:
        if p.removeprefix("relay-") not in dirs:
            ap.error(f"unknown profile {p!r} (disk, tmpfs, relay-disk, relay-tmpfs)")
    for s in servers:
        if s not in ("postfix", "vsmtpd"):
            ap.error(f"unknown server {s!r} (postfix, vsmtpd)")
    binary = os.path.join(os.path.abspath(a.build), "mta", "vsmtpd")
    if "vsmtpd" in servers and not os.access(binary, os.X_OK):
        print(f"bench-mta: {binary} is missing (build first; BENCH_MTA_SERVERS=postfix "
              "runs the Postfix side alone)", file=sys.stderr)
        return 1
    with open(env("BENCH_MTA_RULES", os.path.join(HERE, "rules-small.vsl"))) as f:
        rules = f.read()

    print(f"== bench-mta: {', '.join(servers)}; profiles {', '.join(profiles)}; {rounds} rounds; "
          f"sizes {', '.join(size_label(z) for z in sizes)}; sessions {', '.join(map(str, sessions))}; "
          f"{msgs} messages per run ({msgs_large} over {SMALL_LIMIT // 1024} KB); "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    if "vsmtpd" in servers:
        head = subprocess.run(["git", "-C", src, "log", "-1", "--format=%h %cI"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--", "mta", "vps",
                                "proto", "rules"], capture_output=True, text=True).stdout.strip()
        print(f"# vsmtpd: {binary} built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(os.stat(binary).st_mtime))}"
              f" from {head or '?'}{' + uncommitted changes' if dirty else ''}", flush=True)
    runs, lats, rss, good = [], [], None, True
    bases = []
    try:
        for prof in profiles:
            relay = prof.startswith("relay-")
            base = tempfile.mkdtemp(prefix="bench-mta-", dir=dirs[prof.removeprefix("relay-")])
            bases.append(base)
            os.chmod(base, 0o755)  # Postfix's daemons run as the postfix user
            fs = fs_type(base)
            warn = ("  (WARNING: not a disk file system)"
                    if prof.endswith("disk") and fs in ("tmpfs", "ramfs") else "")
            print(f"# profile {prof}: {base} on {fs}{warn}", flush=True)
            srv = {}
            try:
                for s in servers:
                    d = os.path.join(base, s)
                    if s == "postfix":
                        srv[s] = (mtalib.PostfixRelay if relay else mtalib.PostfixMaildir)(d)
                    else:
                        srv[s] = (mtalib.VsmtpdRelay if relay else mtalib.Vsmtpd)(
                            binary, d, rules, workers=workers,
                            log_level=env("BENCH_MTA_LOG_LEVEL", "info"))
                    if s == "vsmtpd":
                        srv[s].check()
                    srv[s].start()
                for s in servers:  # processes forked, caches warm, maildir in the page cache
                    w = timed_run(srv[s], 10, 200, sizes[0], 120)
                    print(f"# warm-up {s}: {w['e2e_rate']:.0f} msgs/s"
                          + (f"  ERROR {w['error']}" if "error" in w else ""), flush=True)
                    if "error" in w:
                        raise RuntimeError(f"warm-up of {s} failed: {w['error']}\n{srv[s].log_tail()}")
                for rnd in range(1, rounds + 1):
                    for size in sizes:
                        n = msgs if size <= SMALL_LIMIT else msgs_large
                        for c in sessions:
                            for s in servers:
                                r = timed_run(srv[s], c, n, size, timeout=max(120, n / 5))
                                r.update(profile=prof, round=rnd)
                                runs.append(r)
                                if r.get("fatal"):
                                    raise RuntimeError(r["error"])
                                print(f"# {prof} round {rnd} {conf_label(size, c)} {s}: "
                                      f"{r['accept_rate']:.0f} accept/s, {r['e2e_rate']:.0f} e2e/s, "
                                      f"CPU {r['cpu_server_ms']:.2f} ms/msg, gen {r['cpu_gen_ms'] or 0:.2f}"
                                      + (f", sink {r['cpu_sink_ms']:.2f}" if relay else "")
                                      + (f"  ERROR {r['error']}" if "error" in r else ""), flush=True)
                # Open loop at a fraction of Postfix's capacity (its best median e2e rate
                # of small messages in this profile), the same rate for every server.
                cap = [med([r["e2e_rate"] for r in runs if "error" not in r and r["profile"] == prof
                            and r["server"] == "postfix" and r["size"] == z and r["sessions"] == c])
                       for z in sizes if z <= SMALL_LIMIT for c in sessions]
                cap = [x for x in cap if x == x]
                rate = lat_rate_fixed or (lat_fraction * max(cap) if cap else 0)
                if rate > 0 and lat_seconds > 0:
                    count = max(200, int(rate * lat_seconds))
                    for lr in range(1, lat_rounds + 1):
                        for s in servers:
                            x = latency_run(srv[s], rate, count, 5120)
                            x.update(profile=prof, round=lr)
                            lats.append(x)
                            print(f"# {prof} latency {lr} {s} at {rate:.0f}/s: "
                                  + (f"p50 {x['p50_ms']:.2f} p99 {x['p99_ms']:.2f} p99.9 "
                                     f"{x['p999_ms']:.2f} ms, gen CPU {x['gen_cpu_ms_per_msg']:.2f} ms/msg"
                                     if "p50_ms" in x else "")
                                  + (f"  ERROR {x['error']}" if "error" in x else ""), flush=True)
            finally:
                for s in srv.values():
                    s.stop()
        if "vsmtpd" in servers and rss_sessions > 0:
            rss = rss_run(binary, rules, bases[0], rss_sessions, workers)
            rss["sessions"] = rss_sessions
    except (Exception, KeyboardInterrupt, SystemExit) as e:
        # Report what was measured so far; the servers are stopped below.
        print(f"bench-mta: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        good = False
    finally:
        for p in list(_children):
            if p.poll() is None:
                p.kill()
                p.wait()
        postfixlib.stop_all()
        if env("BENCH_MTA_KEEP", ""):
            print(f"# kept: {' '.join(bases)}")
        else:
            for b in bases:
                shutil.rmtree(b, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "latency": [{k: v for k, v in x.items() if k != "latencies_ms"}
                                                 for x in lats], "rss": rss}, f, indent=1)
    good = report(runs, lats, rss, profiles, servers, sizes, sessions) and good
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
