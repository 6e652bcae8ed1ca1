#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""rss_sessions.py BUILD [N] — vpsd's memory with N (500) concurrent milter
sessions (the issue's goal: RSS under 64 MB).

Starts vpsd with bench/milter/rules-20.vsl, opens N milter connections that
negotiate and send CONNECT and HELO (so each has a session in the engine),
then each sends one message up to the headers and stays open; prints vpsd's
RSS (VmRSS and VmHWM from /proc) idle, with N sessions open, and after they
closed, plus its thread count.  Speaks the milter protocol itself (MTA side).
"""
import os, shutil, socket, struct, subprocess, sys, tempfile, time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500

def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data

def z(s):
    return s.encode() + b"\0"

def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def read_packet(sock):
    hdr = b""
    while len(hdr) < 4:
        c = sock.recv(4 - len(hdr))
        if not c:
            raise EOFError
        hdr += c
    (ln,) = struct.unpack(">I", hdr)
    data = b""
    while len(data) < ln:
        c = sock.recv(ln - len(data))
        if not c:
            raise EOFError
        data += c
    return data[:1], data[1:]

def main():
    d = tempfile.mkdtemp(prefix="vps-rss-")
    port = free_port()
    shutil.copy(os.path.join(SRC, "bench/milter/rules-20.vsl"), os.path.join(d, "rules.vsl"))
    with open(os.path.join(d, "vps.conf"), "w") as f:
        f.write(f"[vpsd]\nrules = rules.vsl\n[milter]\nlisten = inet:127.0.0.1:{port}\n"
                f"max_sessions = {n + 100}\n[log]\nlevel = warning\n[quarantine]\ndir = q\n")
    proc = subprocess.Popen([os.path.join(build, "vps/cmd/vpsd"), "-c", os.path.join(d, "vps.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.3)
        idle = status(proc.pid)
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
            _, data = read_packet(s)
            proto = struct.unpack(">III", data[:12])[2]
            steps = [(pkt(b"C", z("client.example") + b"4" + struct.pack(">H", 40000 + i % 20000)
                          + z(f"192.0.2.{i % 250 + 1}")), 0x1000, 0x1),
                     (pkt(b"H", z("client.example")), 0x2000, 0x2),
                     (pkt(b"M", z("<alice@example.com>")), 0x4000, 0x4),
                     (pkt(b"R", z("<bob@example.org>")), 0x8000, 0x8),
                     (pkt(b"T"), 0x10000, 0x200),
                     (pkt(b"L", z("Subject") + z(" hello " + str(i))), 0x80, 0x20)]
            for data_, nr, no in steps:
                if proto & no:
                    continue
                s.sendall(data_)
                if not proto & nr:
                    read_packet(s)
            socks.append(s)
        time.sleep(0.5)
        busy = status(proc.pid)
        for s in socks:
            s.close()
        socks = []
        time.sleep(1.0)
        after = status(proc.pid)
        kb = lambda st, k: int(st[k].split()[0])
        print(f"sessions {n}")
        print(f"rss_idle_kb {kb(idle, 'VmRSS')}")
        print(f"rss_sessions_kb {kb(busy, 'VmRSS')}")
        print(f"rss_after_kb {kb(after, 'VmRSS')}")
        print(f"hwm_kb {kb(after, 'VmHWM')}")
        print(f"threads {busy['Threads']}")
        per = (kb(busy, 'VmRSS') - kb(idle, 'VmRSS')) / n
        print(f"kb_per_session {per:.1f}")
        goal = "met" if kb(after, "VmHWM") < 64 * 1024 else "NOT met"
        print(f"goal RSS < 64 MB with {n} sessions: {goal}")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(d, ignore_errors=True)

main()
