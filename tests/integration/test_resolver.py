#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vps/resolver against a real DNS server: dnsmasq on 127.0.0.1 (and ::1)
and a free port, with records given on its command line.

(a) `[dns] nameserver` works: the rules' dnsbl() and resolves() in
    `vpsctl run` and in vpsd (policy front end) answer from dnsmasq (the
    names exist nowhere else, and dnsmasq's query log shows them);
    `[dns] timeout` bounds a query to a server that never answers.
(b) tests/vps/resolver-probe (vps/resolver.h's asynchronous API) gets the
    MX outcomes right: sorted by preference with ties in random order, null
    MX (RFC 7505), NODATA (and the A/AAAA fallback), NXDOMAIN, a server
    down and a silent server (temporary failure within the timeout), and
    the same answers through an IPv6 name server address."""
import json, os, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import read_text, run, spawn, tmpdir, wait_log_lines

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
PROBE = os.environ["RESOLVER_PROBE"]
DNSMASQ = "/usr/sbin/dnsmasq"

RULES = """
connect {
  rule "zen" when dnsbl("zen.test") => reject 554 5.7.1 "Listed at zen"
}
helo {
  rule "helo" when not resolves(helo.name) => reject 550 5.7.1 "HELO does not resolve"
}
"""

MESSAGE = "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello\r\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port free for both UDP and TCP (dnsmasq takes both)."""
    for _ in range(50):
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((host, 0))
        port = u.getsockname()[1]
        t = socket.socket(family, socket.SOCK_STREAM)
        try:
            t.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise AssertionError("no free port")


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Dnsmasq:
    """dnsmasq in the foreground, answering only from its command line; its
    query log goes to a file (`--log-queries`)."""

    def __init__(self):
        self.port = free_port()
        self.v6 = ipv6_loopback()
        self.logfile = os.path.join(tmpdir(), "dnsmasq.log")
        listen = "127.0.0.1,::1" if self.v6 else "127.0.0.1"
        cmd = [DNSMASQ, "-k", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=",
               f"--port={self.port}", f"--listen-address={listen}", "--bind-interfaces",
               "--log-queries", f"--log-facility={self.logfile}", "--cache-size=0",
               # MX: a tie at 10, then 20; the exchanges have addresses
               "--mx-host=sorted.test,mx2.sorted.test,20",
               "--mx-host=sorted.test,mx1.sorted.test,10",
               "--mx-host=sorted.test,mx1b.sorted.test,10",
               "--host-record=mx1.sorted.test,192.0.2.11,2001:db8::11",
               # RFC 7505 null MX: preference 0, exchange "." (RDATA 00 00 00)
               "--dns-rr=nullmx.test,15,000000",
               # a host without MX: NODATA for MX, an address for the fallback
               "--host-record=nomx.test,192.0.2.30",
               "--host-record=v6only.test,2001:db8::6",
               "--host-record=helo.test,192.0.2.20",
               # DNSBL: 127.0.0.2 listed, 192.0.2.2 answered outside 127/8
               "--host-record=2.0.0.127.zen.test,127.0.0.2",
               "--host-record=2.2.0.192.zen.test,10.0.0.1",
               # every other name under .test does not exist
               "--local=/test/"]
        if os.geteuid() == 0:
            cmd.append("--user=root")  # no switch to an unprivileged user
        self.proc = spawn(cmd, bufsize=0)
        wait_log_lines(lambda: read_text(self.logfile), r"started, version", what="dnsmasq")
        # ready when it answers
        deadline = time.time() + 10
        while True:
            out = probe(self.address(), 1000, "a", "helo.test")
            if out[0]["outcome"] == "ok":
                break
            assert self.proc.poll() is None, read_text(self.logfile)
            assert time.time() < deadline, out
            time.sleep(0.1)

    def address(self, v6=False):
        return f"[::1]:{self.port}" if v6 else f"127.0.0.1:{self.port}"

    def mark(self):
        return len(read_text(self.logfile))

    def wait_asked(self, since, name, source="127.0.0.1"):
        """dnsmasq logged a query for name from source after mark `since`."""
        needle = f"] {name} from {source}"
        deadline = time.time() + 5
        while True:
            text = read_text(self.logfile)[since:]
            if needle in text:
                return
            assert time.time() < deadline, f"dnsmasq was not asked {name}: {text[-2000:]}"
            time.sleep(0.05)


def probe(nameserver, timeout_ms, *queries):
    args = [PROBE, "--timeout", str(timeout_ms)]
    if nameserver:
        args += ["--nameserver", nameserver]
    p = subprocess.run(args + list(queries), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    out = [json.loads(l) for l in p.stdout.splitlines()]
    assert len(out) == len(queries) // 2, p.stdout
    return out


_dns = None


def dns():
    global _dns
    if _dns is None:
        _dns = Dnsmasq()
    return _dns


def make_conf(d, nameserver, timeout="2s"):
    write(os.path.join(d, "rules.vsl"), RULES)
    write(os.path.join(d, "m.eml"), MESSAGE)
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 2
[log]
target = stderr
level = info
[policy]
listen = inet:127.0.0.1:{free_port()}
[dns]
nameserver = {nameserver}
timeout = {timeout}
""")
    return os.path.join(d, "vps.conf")


def vpsctl_run(conf, ip, helo):
    d = os.path.dirname(conf)
    t0 = time.time()
    p = subprocess.run([VPSCTL, "-c", conf, "run", os.path.join(d, "m.eml"), "--json",
                        "--from", "alice@example.com", "--rcpt", "bob@example.org",
                        "--client-ip", ip, "--helo", helo],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout), p.stderr, time.time() - t0


def stage(report, name):
    return [s for s in report["stages"] if s["stage"] == name][0]


# ---- (a) [dns] nameserver and timeout in the engine ------------------------------

def test_vpsctl_dnsbl_resolves_from_dnsmasq():
    srv = dns()
    mark = srv.mark()
    conf = make_conf(tmpdir(), srv.address())
    # 127.0.0.2 is listed: only dnsmasq knows 2.0.0.127.zen.test
    r, err, _ = vpsctl_run(conf, "127.0.0.2", "helo.test")
    assert r["verdict"] == "reject" and r["stage"] == "connect", (r, err)
    assert r["text"] == "Listed at zen", r
    # 192.0.2.1: NXDOMAIN, not listed; helo.test resolves
    r, err, _ = vpsctl_run(conf, "192.0.2.1", "helo.test")
    assert stage(r, "connect")["verdict"] == "continue", (r, err)
    assert stage(r, "helo")["verdict"] == "continue", (r, err)
    assert "dns query=" not in err, err
    # 192.0.2.2 answers 10.0.0.1, outside 127/8: not listed
    r, err, _ = vpsctl_run(conf, "192.0.2.2", "v6only.test")
    assert stage(r, "connect")["verdict"] == "continue", (r, err)
    # resolves() takes AAAA-only names
    assert stage(r, "helo")["verdict"] == "continue", (r, err)
    # a HELO name dnsmasq does not know does not resolve
    r, err, _ = vpsctl_run(conf, "192.0.2.1", "nohost.test")
    assert r["verdict"] == "reject" and r["stage"] == "helo", (r, err)
    for name in ("2.0.0.127.zen.test", "1.2.0.192.zen.test", "2.2.0.192.zen.test", "helo.test",
                 "v6only.test", "nohost.test"):
        srv.wait_asked(mark, name)


def test_vpsctl_ipv6_nameserver():
    srv = dns()
    if not srv.v6:
        raise AssertionError("no IPv6 loopback: cannot check an [IPV6]:PORT nameserver")
    mark = srv.mark()
    conf = make_conf(tmpdir(), srv.address(v6=True))
    r, err, _ = vpsctl_run(conf, "127.0.0.2", "helo.test")
    assert r["verdict"] == "reject" and r["text"] == "Listed at zen", (r, err)
    srv.wait_asked(mark, "2.0.0.127.zen.test", source="::1")


def test_vpsctl_timeout_silent_server():
    # a UDP socket that never answers: the query gives up at [dns] timeout
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        conf = make_conf(tmpdir(), f"127.0.0.1:{silent.getsockname()[1]}", timeout="700ms")
        r, err, elapsed = vpsctl_run(conf, "127.0.0.2", "helo.test")
    finally:
        silent.close()
    # not listed (a broken list must not reject), and HELO read as not resolving
    assert stage(r, "connect")["verdict"] == "continue", (r, err)
    assert r["verdict"] == "reject" and r["stage"] == "helo", (r, err)
    assert "within 700 ms" in err and "dns query=dnsbl:2.0.0.127.zen.test" in err, err
    assert 1.2 <= elapsed < 4.0, elapsed  # two queries of 700 ms, one per stage


def policy_request(port, ip, helo):
    req = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           f"client_address={ip}\nclient_name=unknown\nhelo_name={helo}\n"
           "sender=alice@example.com\nrecipient=bob@example.org\n\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req.encode())
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


def test_vpsd_policy_dnsbl_from_dnsmasq():
    srv = dns()
    d = tmpdir()
    conf = make_conf(d, srv.address())
    port = int(open(conf).read().split("listen = inet:127.0.0.1:")[1].split()[0])
    log_path = os.path.join(d, "vpsd.log")
    p = subprocess.Popen([VPSD, "-c", conf], stdout=open(log_path, "w"),
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    taplib._procs.append(p)
    try:
        wait_log_lines(lambda: read_text(log_path), r"policy: listening on", what="vpsd")
        mark = srv.mark()
        listed = policy_request(port, "127.0.0.2", "helo.test")
        assert "action=554 5.7.1 Listed at zen" in listed, (listed, read_text(log_path))
        clean = policy_request(port, "192.0.2.1", "helo.test")
        assert clean.startswith("action=") and "Listed" not in clean, clean
        assert "HELO" not in clean, clean
        bad_helo = policy_request(port, "192.0.2.1", "nohost.test")
        assert "HELO does not resolve" in bad_helo, bad_helo
        srv.wait_asked(mark, "2.0.0.127.zen.test")
        srv.wait_asked(mark, "nohost.test")
    finally:
        p.terminate()
        p.wait(timeout=15)


# ---- (b) the resolver's MX outcomes against dnsmasq --------------------------------

def test_probe_mx_sorted_ties_random():
    srv = dns()
    out = probe(srv.address(), 3000, *(["mx", "sorted.test"] * 24))
    firsts = set()
    for o in out:
        assert o["outcome"] == "ok", o
        assert [m[0] for m in o["mx"]] == [10, 10, 20], o
        assert {m[1] for m in o["mx"][:2]} == {"mx1.sorted.test", "mx1b.sorted.test"}, o
        assert o["mx"][2][1] == "mx2.sorted.test", o
        firsts.add(o["mx"][0][1])
    # RFC 5321 §5.1: both orders of the tie appear (chance of a false
    # failure: 2 * 2^-24)
    assert firsts == {"mx1.sorted.test", "mx1b.sorted.test"}, firsts


def test_probe_mx_outcomes():
    srv = dns()
    out = probe(srv.address(), 3000, "mx", "nullmx.test", "mx", "nomx.test", "addr", "nomx.test",
                "mx", "nx.test", "addr", "nx.test", "addr", "mx1.sorted.test",
                "aaaa", "v6only.test", "a", "v6only.test")
    by = [(o["kind"], o["name"], o["outcome"]) for o in out]
    assert by == [("mx", "nullmx.test", "null-mx"),
                  ("mx", "nomx.test", "nodata"),
                  ("addr", "nomx.test", "ok"),
                  ("mx", "nx.test", "nxdomain"),
                  ("addr", "nx.test", "nxdomain"),
                  ("addr", "mx1.sorted.test", "ok"),
                  ("aaaa", "v6only.test", "ok"),
                  ("a", "v6only.test", "nodata")], out
    assert out[2]["addresses"] == ["192.0.2.30"], out[2]
    assert out[5]["addresses"] == ["192.0.2.11", "2001:db8::11"], out[5]
    assert out[6]["addresses"] == ["2001:db8::6"], out[6]


def test_probe_ipv6_nameserver():
    srv = dns()
    if not srv.v6:
        raise AssertionError("no IPv6 loopback: cannot check an [IPV6]:PORT nameserver")
    out = probe(srv.address(v6=True), 3000, "mx", "sorted.test", "mx", "nullmx.test",
                "mx", "nx.test")
    assert [o["outcome"] for o in out] == ["ok", "null-mx", "nxdomain"], out


def test_probe_server_down():
    # nothing listens on the port: ICMP port unreachable, a temporary
    # failure well before the timeout
    port = free_port()
    out = probe(f"127.0.0.1:{port}", 4000, "mx", "sorted.test", "addr", "helo.test")
    for o in out:
        assert o["outcome"] == "temporary", o
        assert o["ms"] < 3000, o


def test_probe_server_silent():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        out = probe(f"127.0.0.1:{silent.getsockname()[1]}", 800, "mx", "sorted.test",
                    "addr", "helo.test")
    finally:
        silent.close()
    for o in out:
        assert o["outcome"] == "temporary", o
        assert "within 800 ms" in o["message"], o
        assert 780 <= o["ms"] < 2000, o


def test_probe_dnsmasq_stopped():
    # the server goes away: the same resolver settings now fail temporarily
    srv = Dnsmasq()
    assert probe(srv.address(), 2000, "mx", "sorted.test")[0]["outcome"] == "ok"
    srv.proc.terminate()
    srv.proc.wait(timeout=10)
    o = probe(srv.address(), 2000, "mx", "sorted.test")[0]
    assert o["outcome"] == "temporary" and o["ms"] < 2500, o


if __name__ == "__main__":
    run([test_vpsctl_dnsbl_resolves_from_dnsmasq, test_vpsctl_ipv6_nameserver,
         test_vpsctl_timeout_silent_server, test_vpsd_policy_dnsbl_from_dnsmasq,
         test_probe_mx_sorted_ties_random, test_probe_mx_outcomes, test_probe_ipv6_nameserver,
         test_probe_server_down, test_probe_server_silent, test_probe_dnsmasq_stopped])
