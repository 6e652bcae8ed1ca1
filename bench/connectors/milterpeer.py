# SPDX-License-Identifier: MIT
"""milterpeer.py — the MTA side of the milter protocol, small and blocking,
for bench-connectors: negotiate (version 6, every action and step offered),
CONNECT, HELO, then any number of transactions on the same connection
(MAIL, RCPT, DATA, headers, body, end of message), as Postfix does for an
SMTP session that sends several messages.  Steps the milter asked not to get
are not sent, steps it asked not to answer are not waited for (the NO_* and
NR_* bits of its negotiation reply).  Progress packets are skipped; the
end-of-message round trip is timed by the caller around eom()."""
import socket, struct

# libmilter's mfdef.h
NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
NR_HDR, NODATA = 0x80, 0x200
NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_EOH, NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x40000, 0x80000)
ALL_ACTIONS, ALL_STEPS = 0x1FF, 0x1FFFFF
CHUNK = 65535  # MILTER_CHUNK_SIZE: the largest body packet
FINAL = b"acrtdy"  # accept continue reject tempfail discard replycode


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(s):
    return (s if isinstance(s, bytes) else s.encode()) + b"\0"


class Peer:
    def __init__(self, host, port, client_ip="127.0.0.1", timeout=60):
        self.s = socket.create_connection((host, port), timeout=timeout)
        # without it the body-then-EOM writes meet the 40 ms Nagle stall
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_ip = client_ip
        self.buf = b""

    def close(self):
        try:
            self.s.sendall(pkt(b"Q"))
        except OSError:
            pass
        self.s.close()

    def _read(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    p = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return p[:1], p[1:]
            c = self.s.recv(max(65536, 4 + 65536 - len(self.buf)))
            if not c:
                raise EOFError("milter closed the connection")
            self.buf += c

    def reply(self):
        """The next final reply (progress and modifications collected)."""
        mods = []
        while True:
            cmd, data = self._read()
            if cmd == b"p":
                continue
            if cmd in FINAL:
                return cmd, data, mods
            mods.append((cmd, data))

    def _step(self, data, no, nr, wait=True):
        if self.proto & no:
            return None
        self.s.sendall(data)
        if self.proto & nr or not wait:
            return None
        return self.reply()

    def negotiate(self):
        self.s.sendall(pkt(b"O", struct.pack(">III", 6, ALL_ACTIONS, ALL_STEPS)))
        cmd, data = self._read()
        if cmd != b"O":
            raise RuntimeError(f"negotiation answered {cmd!r}")
        self.version, self.actions, self.proto = struct.unpack(">III", data[:12])

    def connect(self, name="client.example", port=40000):
        return self._step(pkt(b"C", z(name) + b"4" + struct.pack(">H", port) + z(self.client_ip)),
                          NOCONNECT, NR_CONN)

    def helo(self, name="client.example"):
        return self._step(pkt(b"H", z(name)), NOHELO, NR_HELO)

    def open(self):
        """negotiate, connect and helo; the connect reply (None when the
        milter asked for none)."""
        self.negotiate()
        r = self.connect()
        self.helo()
        return r

    def envelope(self, sender="<alice@example.com>", rcpt="<bob@example.org>"):
        """MAIL, RCPT and DATA: the first reply that is not continue, or None."""
        for data, no, nr in ((pkt(b"M", z(sender)), NOMAIL, NR_MAIL),
                             (pkt(b"R", z(rcpt)), NORCPT, NR_RCPT),
                             (pkt(b"T"), NODATA, NR_DATA)):
            r = self._step(data, no, nr)
            if r and r[0] != b"c":
                return r
        return None

    def content(self, headers, body):
        """Headers and body up to (not including) end of message, in one write."""
        out = []
        if not self.proto & NOHDRS:
            for name, value in headers:
                out.append(pkt(b"L", z(name) + z(value)))
        if not self.proto & NOEOH:
            out.append(pkt(b"N"))
        if not self.proto & NOBODY:
            for i in range(0, len(body), CHUNK):
                out.append(pkt(b"B", body[i:i + CHUNK]))
        return b"".join(out)

    def send_content(self, blob):
        """blob from content(); with NR_HDR, NR_EOH and NR_BODY negotiated
        (what vpsd asks when it needs the message) nothing is answered."""
        if not self.proto & (NR_HDR | NOHDRS) or not self.proto & (NR_EOH | NOEOH) \
                or not self.proto & (NR_BODY | NOBODY):
            raise RuntimeError(f"milter wants replies to content steps (0x{self.proto:x})")
        self.s.sendall(blob)

    def eom(self):
        self.s.sendall(pkt(b"E"))
        return self.reply()
