#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""smtpload.py: bench-mta's own SMTP load generators (smtp-source cannot do these).

  smtpload.py latency --port P --rate R --count N [--size BYTES] [--max-inflight M]
      Open loop (BENCH.md): message i is scheduled at t0 + i/R whatever the
      server does; each is one session (EHLO, MAIL, RCPT, DATA, QUIT, no
      pipelining, as smtp-source without -d) and its latency runs from the
      scheduled start to the 250 after the final dot, so a server that falls
      behind shows its queueing delay instead of slowing the load down
      (coordinated omission).  At most M sessions are open at once: a start
      past that waits, and its wait counts in its latency.  Prints one JSON
      object: sent, ok, errors, error samples, p50/p90/p99/p99.9/max in ms,
      achieved rate, most sessions in flight, the generator's own CPU.

  smtpload.py sessions --port P --count N --pid PID
      Opens N sessions that each get the greeting, say EHLO and MAIL FROM and
      then stay idle, reads PID's memory from /proc with all of them open,
      closes them and reads it again.  Prints JSON.
"""
import argparse, asyncio, json, math, os, resource, socket, sys, time

from procstat import proc_status, status_kb

SENDER = "bench@example.com"
RCPT = "mail@bench.test"
# Longest reply line we accept from a server under test (RFC 5321: 512).
MAX_REPLY_LINE = 4096


def build_message(size, tag):
    """A message of about size bytes of body, CRLF lines, dot-safe."""
    head = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: bench-mta {tag}\r\n"
            f"Message-Id: <{tag}.{os.getpid()}@load.bench.test>\r\n"
            "Date: Sat, 28 Nov 2026 00:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = line * (size // len(line)) + b"y" * (size % len(line)) + b"\r\n"
    return head + body


class SmtpError(Exception):
    pass


async def read_reply(reader):
    """(code, last line) of one possibly multi-line reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        if len(line) > MAX_REPLY_LINE:
            raise SmtpError("reply line too long")
        if len(line) < 4 or not line[:3].isdigit():
            raise SmtpError(f"bad reply {line[:60]!r}")
        if line[3:4] != b"-":
            return int(line[:3]), line.decode("utf-8", "replace").rstrip()


async def expect(reader, code, what):
    got, text = await read_reply(reader)
    if got != code:
        raise SmtpError(f"{what}: {text}")


async def one_message(host, port, message, sched, loop):
    """Latency in seconds from sched to the 250 after the data."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await expect(reader, 220, "greeting")
        writer.write(b"EHLO load.bench.test\r\n")
        await expect(reader, 250, "EHLO")
        writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
        await expect(reader, 250, "MAIL")
        writer.write(f"RCPT TO:<{RCPT}>\r\n".encode())
        await expect(reader, 250, "RCPT")
        writer.write(b"DATA\r\n")
        await expect(reader, 354, "DATA")
        writer.write(message + b".\r\n")
        await expect(reader, 250, "end of data")
        latency = loop.time() - sched
        writer.write(b"QUIT\r\n")
        try:
            await asyncio.wait_for(read_reply(reader), 5)
        except (SmtpError, asyncio.TimeoutError, OSError):
            pass  # the message counts once it has its 250
        return latency
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def percentile(sorted_xs, q):
    """Nearest-rank percentile (no interpolation: p99.9 of 1,000 samples is
    the largest but one)."""
    if not sorted_xs:
        return float("nan")
    k = min(len(sorted_xs), max(1, math.ceil(q / 100 * len(sorted_xs))))
    return sorted_xs[k - 1]


async def latency_run(a):
    loop = asyncio.get_running_loop()
    message = build_message(a.size, "latency")
    sem = asyncio.Semaphore(a.max_inflight)
    lat, errors = [], []
    state = {"inflight": 0, "peak": 0}

    async def task(sched):
        async with sem:
            state["inflight"] += 1
            state["peak"] = max(state["peak"], state["inflight"])
            try:
                lat.append(await asyncio.wait_for(one_message(a.host, a.port, message, sched, loop),
                                                  a.timeout))
            except (SmtpError, OSError, asyncio.TimeoutError) as e:
                errors.append(f"{type(e).__name__}: {e}")
            finally:
                state["inflight"] -= 1

    tasks = []
    t0 = loop.time() + 0.1
    for i in range(a.count):
        sched = t0 + i / a.rate
        delay = sched - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(task(sched)))
    await asyncio.gather(*tasks)
    wall = loop.time() - t0
    lat.sort()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ms = lambda v: round(v * 1000, 3)
    return {
        "sent": a.count, "ok": len(lat), "errors": len(errors), "error_samples": errors[:5],
        "rate": a.rate, "achieved_rate": len(lat) / wall if wall > 0 else 0,
        "p50_ms": ms(percentile(lat, 50)), "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)), "p999_ms": ms(percentile(lat, 99.9)),
        "max_ms": ms(lat[-1]) if lat else None, "peak_inflight": state["peak"],
        "gen_cpu_ms_per_msg": (ru.ru_utime + ru.ru_stime) * 1000 / max(len(lat), 1),
        # Raw samples let the caller pool several runs before taking percentiles.
        "latencies_ms": [ms(v) for v in lat],
    }


# ---------------------------------------------------------------- sessions


def _recv_reply(sock, buf):
    """(code, rest of buffer) of one reply read from a blocking socket."""
    while True:
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if len(line) < 4 or not line[:3].isdigit():
                raise SmtpError(f"bad reply {line[:60]!r}")
            if line[3:4] != b"-":
                return int(line[:3]), buf
        if len(buf) > MAX_REPLY_LINE:
            raise SmtpError("reply line too long")
        chunk = sock.recv(4096)
        if not chunk:
            raise SmtpError("connection closed")
        buf += chunk


def sessions_run(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.count + 1000), hard))
    fds = lambda: len(os.listdir(f"/proc/{a.pid}/fd"))
    idle, idle_fds = proc_status(a.pid), fds()
    socks, failed = [], []
    t0 = time.monotonic()
    try:
        for i in range(a.count):
            try:
                s = socket.create_connection((a.host, a.port), timeout=30)
                buf = b""
                code, buf = _recv_reply(s, buf)
                if code != 220:
                    raise SmtpError(f"greeting {code}")
                s.sendall(b"EHLO idle.bench.test\r\n")
                code, buf = _recv_reply(s, buf)
                if code != 250:
                    raise SmtpError(f"EHLO {code}")
                s.sendall(f"MAIL FROM:<idle{i}@example.com>\r\n".encode())
                code, buf = _recv_reply(s, buf)
                if code != 250:
                    raise SmtpError(f"MAIL {code}")
                socks.append(s)
            except (OSError, SmtpError) as e:
                failed.append(f"session {i}: {type(e).__name__}: {e}")
                if len(failed) > 20:
                    break
        open_s = time.monotonic() - t0
        time.sleep(a.settle)
        busy, busy_fds = proc_status(a.pid), fds()
        # Every session must still be alive: one NOOP each proves it.
        alive = 0
        for s in socks:
            try:
                s.sendall(b"NOOP\r\n")
                if _recv_reply(s, b"")[0] == 250:
                    alive += 1
            except (OSError, SmtpError):
                pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    time.sleep(a.settle)
    after = proc_status(a.pid)
    return {
        "sessions": a.count, "opened": len(socks), "alive": alive, "failed": failed[:5],
        "open_seconds": round(open_s, 3),
        "rss_idle_kb": status_kb(idle, "VmRSS"), "rss_sessions_kb": status_kb(busy, "VmRSS"),
        "rss_after_kb": status_kb(after, "VmRSS"), "hwm_kb": status_kb(after, "VmHWM"),
        "threads_idle": int(idle["Threads"]), "threads_sessions": int(busy["Threads"]),
        "fds_idle": idle_fds, "fds_sessions": busy_fds,
        "kb_per_session": (status_kb(busy, "VmRSS") - status_kb(idle, "VmRSS")) / max(len(socks), 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--host", default="127.0.0.1")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--rate", type=float, required=True)
    lat.add_argument("--count", type=int, required=True)
    lat.add_argument("--size", type=int, default=5120)
    lat.add_argument("--max-inflight", type=int, default=500)
    lat.add_argument("--timeout", type=float, default=120)
    ses = sub.add_parser("sessions")
    ses.add_argument("--host", default="127.0.0.1")
    ses.add_argument("--port", type=int, required=True)
    ses.add_argument("--count", type=int, default=1000)
    ses.add_argument("--pid", type=int, required=True)
    ses.add_argument("--settle", type=float, default=1.0)
    a = ap.parse_args()
    if a.mode == "latency":
        if a.rate <= 0 or a.count <= 0:
            ap.error("--rate and --count must be positive")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < a.max_inflight + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.max_inflight + 1000), hard))
        out = asyncio.run(latency_run(a))
    else:
        out = sessions_run(a)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
