# SPDX-License-Identifier: MIT
"""What the connector tests share: reading `vpsctl run --json` reports, and a
raw milter client that asks vpsd's milter server for its CONNECT verdict.

    results(report, stage, connector) -> [result dicts of that connector at stage]
    stage(report, name, rcpt=None) -> the stage dict (of that recipient)
    mods(report) -> [(op, name, value)]
    milter_pkt(cmd, data) -> bytes   milter_read(sock) -> (cmd, data)
    milter_connect_verdict(port, ip, timeout=30) -> (cmd, data) after progress packets
"""
import socket, struct


def results(report, stage, connector):
    """The connector results of every run of `stage`, in order."""
    out = []
    for s in report["stages"]:
        if s["stage"] == stage:
            out += [r for r in s["results"] if r["connector"] == connector]
    return out


def stage(report, name, rcpt=None):
    for s in report["stages"]:
        if s["stage"] == name and (rcpt is None or s.get("rcpt") == rcpt):
            return s
    raise AssertionError(f"no stage {name} {rcpt or ''} in {report['stages']}")


def mods(report):
    return [(m["op"], m.get("name"), m.get("value")) for m in report["modifications"]]


def milter_pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def milter_read(sock):
    buf = b""
    while len(buf) < 4:
        chunk = sock.recv(4 - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    (n,) = struct.unpack(">I", buf)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data[:1], data[1:]


def milter_connect_verdict(port, ip, timeout=30):
    """Negotiate and send CONNECT from ip; the reply command (progress skipped)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(milter_pkt(b"O", struct.pack(">III", 6, 0x1FF, 0)))
    cmd, _ = milter_read(s)
    assert cmd == b"O", cmd
    s.sendall(milter_pkt(b"C", b"client.example\0" + b"4" + struct.pack(">H", 4242) +
                         ip.encode() + b"\0"))
    while True:
        cmd, data = milter_read(s)
        if cmd != b"p":  # progress
            s.close()
            return cmd, data
