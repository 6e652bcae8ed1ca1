#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Running as a service (issue 10, docs/operations.md), from the outside:

- the metrics endpoint of vpsd and vsmtpd scraped over HTTP and parsed as
  the Prometheus text format 0.0.4 (HELP/TYPE before samples, label
  escaping, histogram series); its counters move as mail flows through
  vsmtpd and as milter sessions reach vpsd, and do not go back at a
  reload; the health endpoint (200 ok, 503 while draining with a milter
  transaction open, 404/405 for the rest);
- started as root with [vpsd] user = nobody, the daemons bind (a port below
  1024 too) and then run as nobody: /proc/PID/status of every thread says
  so, the spool, the delivered mail and a unix listening socket belong to
  nobody; a vps.conf nobody cannot read is refused; without a user
  they refuse to run as root unless allowed; a spool nobody cannot write is
  refused with the fix in the message;
- sd_notify without systemd: NOTIFY_SOCKET is a datagram socket of this
  test, READY=1, RELOADING=1 (+MONOTONIC_USEC) then READY=1, STOPPING=1;
- SIGHUP again and again during an smtp-source run: every message accepted
  and delivered, smtp-source sees no error; SIGTERM during a run: the
  daemon drains and exits 0, every message it said "queued" to is
  delivered (after a restart for what was still queued), none lost.

The tests run as root (meson's integration_env sets VPS_ALLOW_ROOT=1 for
the other tests; it is removed here where the refusal is checked).  A test
that needs root is reported "# SKIP" when not root, never as passed."""
import functools, grp, http.client, os, pwd, re, signal, socket, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import Skip, run, tmpdir
from vsmtpdlib import Vsmtpd, VSMTPD, free_port
from reportlib import milter_connect_verdict, milter_pkt, milter_read
import vpsdlib
import prometheus_client.parser as prometheus_parser

VPSD = vpsdlib.VPSD
# the daemons switch to nobody here, who must reach the files in the directory
Vpsd = functools.partial(vpsdlib.Vpsd, mode=0o755)
USER, GROUP = "nobody", "nogroup"


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (the daemons start as root and switch to nobody)")


def env_without_allow_root():
    env = dict(os.environ)
    env.pop("VPS_ALLOW_ROOT", None)
    return env


# ---- the text format -------------------------------------------------------------



def parse_metrics(text):
    """{(name, ((label, value), ...)): float}, read by the Prometheus
    project's own parser (python3-prometheus-client), which refuses what a
    scraper would; plus the rules it lets pass: a final newline, HELP before
    TYPE, every family declared once."""
    assert text.endswith("\n"), "no final newline"
    helps, declared = set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            name = line.split(" ")[2]
            assert name in helps, f"TYPE before HELP: {line}"
            assert name not in declared, f"family declared twice: {name}"
            declared.add(name)
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        assert family.type in ("counter", "gauge", "histogram"), (family.name, family.type)
        for sample in family.samples:
            out[(sample.name, tuple(sample.labels.items()))] = float(sample.value)
    return out


def value(metrics, name, **labels):
    """The sample of name with exactly these labels (0 when absent)."""
    want = tuple(sorted(labels.items()))
    for (n, ls), v in metrics.items():
        if n == name and tuple(sorted(ls)) == want:
            return v
    return 0.0


def http_get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode("utf-8")
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body
    finally:
        c.close()


def scrape(port):
    status, headers, body = http_get(port, "/metrics")
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    assert headers.get("connection") == "close", headers
    return parse_metrics(body)


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def proc_ids(pid):
    """{thread id: (Uid line, Gid line, Groups line)} of every thread."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.split()
        out[tid] = (fields["Uid"], fields["Gid"], fields["Groups"])
    return out


def free_low_port():
    """A port below 1024 that nothing on 127.0.0.1 uses now (binding it
    needs root: what the raise around bind() is for)."""
    for port in list(range(700, 1000, 7)):
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024")


# ---- vpsd ----------------------------------------------------------------------------


def test_vpsd_metrics_follow_milter_sessions_and_reload():
    mport, port = free_port(), free_port()
    v = Vpsd(f"""[vpsd]
rules = rules.vsl
workers = 2
[milter]
listen = inet:127.0.0.1:{port}
[metrics]
listen = 127.0.0.1:{mport}
[quarantine]
dir = q
""", 'connect {\n  rule "bad \\"client\\"" when client.ip == 192.0.2.66 => reject\n}\n')
    v.start(wait_port=port)
    before = scrape(mport)
    assert value(before, "vps_sessions_total") == 0, before
    assert value(before, "vps_info", program="vpsd") == 1
    assert value(before, "vps_config_generation") == 1
    cmd, _ = milter_connect_verdict(port, "192.0.2.66")
    assert cmd in (b"r", b"y"), cmd  # SMFIR_REJECT / SMFIR_REPLYCODE 5xx
    cmd, _ = milter_connect_verdict(port, "198.51.100.1")
    assert cmd == b"c", cmd  # SMFIR_CONTINUE
    after = scrape(mport)
    assert value(after, "vps_sessions_total") - value(before, "vps_sessions_total") == 2, after
    assert value(after, "vps_stage_verdicts_total", stage="connect", verdict="reject") == 1
    assert value(after, "vps_stage_verdicts_total", stage="connect", verdict="continue") == 1

    status, _, body = http_get(mport, "/health")
    assert status == 200 and body.startswith("ok generation=1"), (status, body)
    assert http_get(mport, "/nothing")[0] == 404
    assert http_get(mport, "/metrics", method="POST")[0] == 405

    # a reload: the new engine starts at zero, the exported totals do not
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(mport), "vps_config_generation") == 2, what="generation 2")
    reloaded = scrape(mport)
    assert value(reloaded, "vps_reloads_total", result="ok") == 1
    assert value(reloaded, "vps_stage_verdicts_total", stage="connect", verdict="reject") == 1
    cmd, _ = milter_connect_verdict(port, "192.0.2.66")
    assert cmd in (b"r", b"y"), cmd
    assert value(scrape(mport), "vps_stage_verdicts_total", stage="connect", verdict="reject") == 2
    # a broken rule file is refused and counted
    with open(os.path.join(v.dir, "rules.vsl"), "w") as f:
        f.write("connect { rule broken }\n")
    v.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(mport), "vps_reloads_total", result="failed") == 1,
             what="a failed reload")
    assert value(scrape(mport), "vps_config_generation") == 2

    # SIGTERM with a milter transaction open: the endpoint still answers,
    # /health says 503 draining (a balancer stops sending), then the daemon
    # exits once the MTA closes
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(milter_pkt(b"O", struct.pack(">III", 6, 0x1FF, 0)))
    assert milter_read(s)[0] == b"O"
    for cmd, data in ((b"C", b"mta.test\0" + b"4" + struct.pack(">H", 25) + b"198.51.100.2\0"),
                      (b"H", b"client.test\0"), (b"M", b"<a@src.test>\0")):
        s.sendall(milter_pkt(cmd, data))
        assert milter_read(s)[0] == b"c"
    v.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: http_get(mport, "/health")[0] == 503, what="health 503")
    status, _, body = http_get(mport, "/health")
    assert body.startswith("draining sessions=1"), body
    m = scrape(mport)
    assert value(m, "vps_draining") == 1 and value(m, "vps_sessions_active") == 1, m
    assert v.proc.poll() is None  # waits for the transaction
    s.close()
    assert v.proc.wait(timeout=20) == 0


def test_vsmtpd_metrics_follow_mail():
    mport = free_port()
    v = Vsmtpd(rules='rcpt { rule "no bad" when rcpt.domain == "bad.test" => reject }\n',
               settings={"vsmtpd": {"metrics_listen": f"127.0.0.1:{mport}"}})
    v.start()
    before = scrape(mport)
    for i in range(3):
        reply, qid = v.send_mail("a@src.test", ["bob@ok.test"], f"Subject: m{i}\n\nbody {i}\n")
        assert reply.code == 250 and qid, reply.raw
    reply, qid = v.send_mail("a@src.test", ["eve@bad.test"], "Subject: x\n\nx\n")
    assert reply.code == 550 and qid is None, reply.raw
    v.wait_maildir("bob@ok.test", count=3)
    wait_for(lambda: value(scrape(mport), "vps_delivery_results_total", result="delivered") == 3,
             what="3 deliveries counted")
    m = scrape(mport)
    d = lambda name, **l: value(m, name, **l) - value(before, name, **l)  # noqa: E731
    assert d("vps_sessions_total") == 4, m
    assert d("vps_transactions_total", frontend="smtp") == 4
    assert d("vps_messages_accepted_total", frontend="smtp") == 3
    assert d("vps_stage_verdicts_total", stage="rcpt", verdict="reject") == 1
    assert d("vps_stage_verdicts_total", stage="rcpt", verdict="continue") == 3
    assert value(m, "vps_queue_messages", area="incoming") == 0
    assert ("vps_queue_messages", (("area", "hold"),)) in m
    status, _, body = http_get(mport, "/health")
    assert status == 200 and body.startswith("ok "), (status, body)
    assert v.stop() == 0


# ---- privileges --------------------------------------------------------------------


def nobody_dirs(v, *names):
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    for name in names:
        path = os.path.join(v.dir, name)
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
    return uid, gid


def test_vsmtpd_as_root_switches_to_nobody():
    need_root()
    low, mport = free_low_port(), free_port()
    v = Vsmtpd(settings={
        "vpsd": {"user": USER, "group": GROUP, "workers": "2"},
        "vsmtpd": {"listen": f"127.0.0.1:{{port}}, 127.0.0.1:{low}",
                   "metrics_listen": f"127.0.0.1:{mport}"},
    })
    uid, gid = nobody_dirs(v, "queue", "quarantine", "mail", "exports")
    v.start()
    wait_for(lambda: "ready" in v.log(), what="ready")
    ids = proc_ids(v.proc.pid)
    assert len(ids) >= 3, ids  # main + 2 workers at least
    for tid, (uids, gids, groups) in ids.items():
        assert uids == [str(uid)] * 4, (tid, uids)  # real, effective, saved, fs
        assert gids == [str(gid)] * 4, (tid, gids)
        assert groups == [str(gid)], (tid, groups)  # root's groups are gone
    assert re.search(rf"running as user {USER} \(uid {uid}, gid {gid}\)", v.log())
    # the port below 1024 was bound before the switch, and serves
    reply, qid = v.send_mail("a@src.test", ["bob@ok.test"], "Subject: low\n\nlow port\n", port=low)
    assert reply.code == 250 and qid, reply.raw
    reply, qid2 = v.send_mail("a@src.test", ["bob@ok.test"], "Subject: hi\n\nhi\n")
    assert reply.code == 250 and qid2, reply.raw
    msgs = v.wait_maildir("bob@ok.test", count=2)
    assert len(msgs) == 2
    for path in v.all_delivered():
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid), (path, st.st_uid, st.st_gid)
    for area in ("incoming", "hold", "tmp"):
        st = os.stat(os.path.join(v.queue_dir, area))
        assert st.st_uid == uid, (area, st.st_uid)
    assert scrape(mport)  # the endpoint serves after the switch too
    # a reload reads the config and rules as nobody
    v.proc.send_signal(signal.SIGHUP)
    v.wait_log(r"reloaded .*generation=2")
    assert v.stop() == 0


def test_vpsd_as_root_switches_to_nobody():
    need_root()
    port = free_port()
    v = Vpsd(f"""[vpsd]
rules = rules.vsl
workers = 2
user = {USER}
group = {GROUP}
[milter]
listen = inet:127.0.0.1:{port}
[policy]
listen = unix:sock/policy.sock
[quarantine]
dir = q
""", "", env=env_without_allow_root())
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    for d in ("q", "sock"):
        os.makedirs(os.path.join(v.dir, d))
        os.chown(os.path.join(v.dir, d), uid, gid)
    v.start(wait_port=port)
    wait_for(lambda: "ready" in v.log(), what="ready")
    for tid, (uids, _, _) in proc_ids(v.proc.pid).items():
        assert uids == [str(uid)] * 4, (tid, uids)
    cmd, _ = milter_connect_verdict(port, "198.51.100.1")
    assert cmd == b"c", cmd
    # the unix socket is the user's (the MTA is given access through its group)
    st = os.stat(os.path.join(v.dir, "sock", "policy.sock"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o660), st
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(os.path.join(v.dir, "sock", "policy.sock"))
        s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.1\n"
                  b"sender=a@b.test\nrecipient=c@d.test\n\n")
        assert s.recv(4096).startswith(b"action="), "no policy answer"
    assert v.stop() == 0
    # the socket file is removed at exit, as the user
    assert not os.path.exists(os.path.join(v.dir, "sock", "policy.sock"))


def test_refuses_root_without_user():
    need_root()
    env = env_without_allow_root()
    for program in ("vsmtpd", "vpsd"):
        v = Vsmtpd()
        v.write_config()
        binary = VSMTPD if program == "vsmtpd" else VPSD
        p = subprocess.run([binary, "-c", v.conf_path], capture_output=True, text=True,
                           timeout=30, env=env, cwd=v.dir)
        assert p.returncode == 1, (program, p.returncode, p.stderr)
        assert "refusing to run as root" in p.stderr, p.stderr
        assert "allow_root = true" in p.stderr, p.stderr
        # --check is no run: it passes
        p = subprocess.run([binary, "-c", v.conf_path, "--check"], capture_output=True,
                           text=True, timeout=30, env=env, cwd=v.dir)
        assert p.returncode == 0, (program, p.stderr)
    # allowed in the file: it runs (as root)
    v = Vsmtpd(settings={"vpsd": {"allow_root": "true"}})
    saved = os.environ.pop("VPS_ALLOW_ROOT", None)
    try:
        v.start()
    finally:
        if saved is not None:
            os.environ["VPS_ALLOW_ROOT"] = saved
    assert proc_ids(v.proc.pid)[str(v.proc.pid)][0][0] == "0"
    assert v.stop() == 0


def test_refuses_unknown_user_and_spool_of_root():
    need_root()
    v = Vsmtpd(settings={"vpsd": {"user": "vps-no-such-user"}})
    rc, out = v.check()
    assert rc == 1 and "vps-no-such-user" in out and "no such user" in out, out
    # the spool left by a run as root: refused, with the fix
    v = Vsmtpd(settings={"vpsd": {"user": USER, "group": GROUP}})
    nobody_dirs(v, "quarantine", "mail", "exports")
    os.makedirs(os.path.join(v.dir, "queue", "incoming"))
    os.chmod(os.path.join(v.dir, "queue", "incoming"), 0o700)
    v.write_config()
    p = subprocess.run([VSMTPD, "-c", v.conf_path], capture_output=True, text=True, timeout=30,
                       cwd=v.dir)
    assert p.returncode == 1, p.stderr
    assert "not writable by user nobody" in p.stderr, p.stderr
    assert f"chown -R {USER}:{GROUP} " in p.stderr, p.stderr
    # a vps.conf only root can read: the first reload would fail, so the start does
    v = Vsmtpd(settings={"vpsd": {"user": USER, "group": GROUP}})
    nobody_dirs(v, "queue", "quarantine", "mail", "exports")
    v.write_config()
    os.chmod(v.conf_path, 0o600)
    p = subprocess.run([VSMTPD, "-c", v.conf_path], capture_output=True, text=True, timeout=30,
                       cwd=v.dir)
    assert p.returncode == 1, p.stderr
    assert "not readable by user nobody" in p.stderr, p.stderr


# ---- sd_notify ------------------------------------------------------------------------


def test_sd_notify_ready_reloading_stopping():
    need_root()
    v = Vsmtpd(settings={"vpsd": {"user": USER, "group": GROUP}})
    nobody_dirs(v, "queue", "quarantine", "mail", "exports")
    path = os.path.join(v.dir, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # the daemon speaks as nobody by then, as with systemd's socket
    sock.settimeout(15)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        v.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]

    def message():
        data = sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    m = message()
    assert m.get("READY") == "1", m
    assert "STATUS" in m and "generation 1" in m["STATUS"], m
    assert m.get("MAINPID") == str(v.proc.pid), m
    v.proc.send_signal(signal.SIGHUP)
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    m = message()
    assert m.get("RELOADING") == "1", m
    # MONOTONIC_USEC: CLOCK_MONOTONIC at the signal, as systemd compares it
    assert abs(int(m["MONOTONIC_USEC"]) - t0) < 5_000_000, (m, t0)
    m = message()
    assert m.get("READY") == "1" and "generation 2" in m.get("STATUS", ""), m
    v.proc.send_signal(signal.SIGTERM)
    m = message()
    assert m.get("STOPPING") == "1", m
    assert v.proc.wait(timeout=30) == 0
    sock.close()


# ---- under load --------------------------------------------------------------------


def smtp_source(port, messages, sessions=10, size=2048):
    return subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l",
                             str(size), "-f", "load@src.test", "-t", "bob@ok.test",
                             f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def test_sighup_during_smtp_source_loses_nothing():
    n, mport = 2000, free_port()
    v = Vsmtpd(rules='data { rule "stamp" => add_header "X-Gen" "a" }\n',
               settings={"vpsd": {"workers": "2"}, "log": {"level": "info"},
                         "vsmtpd": {"metrics_listen": f"127.0.0.1:{mport}"}})
    v.start()
    src = smtp_source(v.port, n)
    reloads, t0 = 0, time.time()
    while src.poll() is None:
        time.sleep(0.05)
        # a real change each time: the rules alternate
        with open(v.rules_path, "w") as f:
            f.write('data { rule "stamp" => add_header "X-Gen" "%s" }\n' % "ab"[reloads % 2])
        v.proc.send_signal(signal.SIGHUP)
        reloads += 1
        # one at a time: signals sent faster than they are handled merge
        wait_for(lambda: value(scrape(mport), "vps_config_generation") == reloads + 1,
                 what=f"generation {reloads + 1}")
    out = src.stdout.read().decode("utf-8", "replace")
    print(f"# {n} messages in {time.time() - t0:.2f}s, {reloads} reloads during the run",
          flush=True)
    assert src.returncode == 0, f"smtp-source failed ({src.returncode}): {out[-2000:]}"
    assert reloads >= 3, f"the run was too short to reload during it ({reloads})"
    msgs = v.wait_maildir("bob@ok.test", count=n, timeout=60)
    assert len(msgs) == n, len(msgs)
    wait_for(lambda: value(scrape(mport), "vps_reloads_total", result="ok") == reloads,
             what=f"{reloads} reloads")
    m = scrape(mport)
    assert value(m, "vps_reloads_total", result="failed") == 0
    assert value(m, "vps_messages_accepted_total", frontend="smtp") == n
    assert value(m, "vps_delivery_results_total", result="delivered") == n
    log = v.log()
    assert not re.search(r"\b421\b|drain timeout|connection lost in a transaction", log), \
        [l for l in log.splitlines() if re.search(r"421|drain|lost", l)][:5]
    taplib._procs.append(src)
    assert v.stop() == 0


def test_sigterm_during_smtp_source_drains():
    n = 5000
    v = Vsmtpd(settings={"vpsd": {"workers": "2", "drain_timeout": "20s"},
                         "log": {"level": "info"}})
    v.start()
    src = smtp_source(v.port, n)
    taplib._procs.append(src)
    v.wait_log(r"queued from=", count=100, timeout=30)
    t0 = time.time()
    v.proc.send_signal(signal.SIGTERM)
    rc = v.proc.wait(timeout=40)
    drained_in = time.time() - t0
    src.wait(timeout=30)
    assert rc == 0, f"exit {rc}: {v.log()[-2000:]}"
    assert drained_in < 25, drained_in
    log = v.log()
    assert re.search(r"\bnotice stopped$", log, re.M), log[-2000:]
    # smtp-source is told 421 or finds the door closed; it stops with an error
    assert src.returncode != 0
    queued = set(re.findall(r"smtp: ([0-9A-F]{16}): queued from=", log))
    print(f"# SIGTERM after {len(queued)} of {n} messages queued; drained and exited in "
          f"{drained_in:.2f}s", flush=True)
    assert 100 <= len(queued) < n, len(queued)
    assert "drain timeout" not in log, "sessions had to be cut"
    # every message it said 250 to is delivered, now or after a restart
    v.start()
    msgs = v.wait_maildir("bob@ok.test", count=len(queued), timeout=120)
    assert len(msgs) == len(queued), (len(msgs), len(queued))
    time.sleep(0.5)
    assert len(v.maildir_messages("bob@ok.test")) == len(queued)
    assert v.queue_ids() == []
    assert v.stop() == 0


run([test_vpsd_metrics_follow_milter_sessions_and_reload, test_vsmtpd_metrics_follow_mail,
     test_vsmtpd_as_root_switches_to_nobody, test_vpsd_as_root_switches_to_nobody,
     test_refuses_root_without_user, test_refuses_unknown_user_and_spool_of_root,
     test_sd_notify_ready_reloading_stopping, test_sighup_during_smtp_source_loses_nothing,
     test_sigterm_during_smtp_source_drains])
