#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's spool as TESTING.md ("Durability (vsmtpd)") wants it, from the
outside: the queue files after a 250 (incoming/ID.eml + ID.json, modes,
envelope fields, Received header), delivered -> removed; the fsync order
before the 250 (strace); kill -9 before the final reply (nothing visible
after restart) and after it (still queued; with maildir delivery: delivered
once or twice, never zero times); SIGTERM lets a transaction in flight
finish and closes sessions with 421; corrupt queue files at start (moved to
corrupt/ or removed, logged once, no crash, no loop); ENOSPC and fsync
failures injected with tests/mta/enospc-shim.c ($VPS_ENOSPC_SHIM) and a
rename failure (chattr +i incoming/) -> 451 4.3.0, never 250, no partial
file; [queue] min_free -> 452 4.3.1 at MAIL;
`vpsctl queue` list/show/hold/release/delete on the spool of a running
vsmtpd."""
import json, os, re, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run
import taplib
from vsmtpdlib import Vsmtpd, VSMTPD, VPSCTL, queue_id, dot_stuff
from postfixlib import is_listening

SHIM = os.environ.get("VPS_ENOSPC_SHIM", "")
QID = re.compile(r"queued as ([0-9A-F]{16})\b")


# ---- helpers -------------------------------------------------------------------


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def message(subject, body="Hello.\r\n", extra=""):
    return (f"From: Alice <alice@src.test>\r\nTo: Bob <bob@dst.test>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@src.test>\r\n{extra}\r\n{body}").encode()


def transaction(c, data, sender="alice@src.test", rcpts=("bob@dst.test",), mail_params="",
                rcpt_params=""):
    """MAIL, RCPT..., DATA, the content and its end on a session after EHLO;
    returns the reply to the end of data."""
    r = c.cmd(f"MAIL FROM:<{sender}>{mail_params}")
    assert r.code == 250, f"MAIL: {r}"
    for rc in rcpts:
        r = c.cmd(f"RCPT TO:<{rc}>{rcpt_params}")
        assert r.code == 250, f"RCPT {rc}: {r}"
    r = c.cmd("DATA")
    assert r.code == 354, f"DATA: {r}"
    c.send(dot_stuff(data) + b".\r\n")
    return c.reply()


def ctl(v, *args, check=True, binary=False):
    """vpsctl -c CONF ARGS; binary: stdout as bytes (raw messages)."""
    p = subprocess.run([VPSCTL, "-c", v.conf_path, *args], capture_output=True,
                       text=not binary, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"vpsctl {args} exited {p.returncode}: {p.stderr}")
    return p


def wait_until(pred, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def unfold(headers):
    return re.sub(r"\r?\n[ \t]+", " ", headers)


# A route that keeps messages queued: a relay on a port where nothing
# listens (connection refused: deferred, next try [queue] retry_min later).
KEEP = "relay:[127.0.0.1]:1"


def make(rules="", delivery=None, queue=None):
    """A vsmtpd for one test (not started).  delivery: [delivery] default
    (the harness's maildir:DIR/mail/%d/%l when None; KEEP stays deferred);
    queue: extra [queue] keys.  The queue runs every second so waits stay
    short."""
    settings = {"queue": dict({"run_interval": "1s"}, **(queue or {}))}
    if delivery is not None:
        settings["delivery"] = {"default": delivery}
    return Vsmtpd(rules=rules, settings=settings)


def start_with_env(v, env):
    """Start v with extra environment variables (LD_PRELOAD of the shim):
    set in our environment for the spawn only, since the harness passes
    its own environment on."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return v.start()
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


# ---- the files of a committed message -------------------------------------------


def test_queue_files_after_250_and_envelope():
    v = make(delivery=KEEP).start()
    data = message("files", body="Line one.\r\n.leading dot\r\n")
    with v.smtp() as c:
        c.ehlo("client.test")
        r = transaction(c, data, mail_params=" RET=HDRS ENVID=env+2B1",
                        rcpt_params=" NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@dst.test")
        c.cmd("QUIT")
    assert r.code == 250 and r.text.startswith("2.0.0 Ok: queued as "), r
    qid = queue_id(r)
    # Both files are in incoming/ when the 250 arrives; the message is not
    # in tmp/ any more (an envelope rewrite after the first delivery attempt
    # may pass through tmp/ for a moment).
    assert v.queue_files("incoming") == [qid + ".eml", qid + ".json"], v.queue_files("incoming")
    assert qid + ".eml" not in v.queue_files("tmp"), v.queue_files("tmp")
    for area in ("tmp", "incoming", "hold", "corrupt"):
        mode = os.stat(os.path.join(v.queue_dir, area)).st_mode & 0o777
        assert mode == 0o700, (area, oct(mode))
    for f in (qid + ".eml", qid + ".json"):
        mode = os.stat(os.path.join(v.queue_dir, "incoming", f)).st_mode & 0o777
        assert mode == 0o600, (f, oct(mode))
    eml = v.queued_message(qid)
    env = v.envelope(qid)
    # The message: our Received on top, then what was sent (CRLF, unstuffed).
    assert eml.endswith(data), eml[-300:]
    head = eml[:len(eml) - len(data)].decode()
    first = unfold(head).split("\r\n")[0]
    assert re.match(rf"Received: from client\.test \((\S+ )?\[127\.0\.0\.1\]\) by mx\.test "
                    rf"\(vsmtpd\) with ESMTP id {qid} for <bob@dst\.test>; \S.*\d{{4}}", first), first
    assert b"\r\n.leading dot\r\n" in eml and b"\n..leading" not in eml
    assert b"\n" not in eml.replace(b"\r\n", b""), "a bare LF in the queued message"
    # The envelope: every field the spec names.
    assert env["id"] == qid and env["sender"] == "alice@src.test", env
    assert env["ret"] == "HDRS" and env["envid"] == "env+1", env
    assert env["size"] == len(eml), (env["size"], len(eml))
    assert env["client"]["ip"] == "127.0.0.1" and env["client"]["helo"] == "client.test", env
    assert env.get("session"), env
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", env["received"]), env["received"]
    assert len(env["recipients"]) == 1, env
    rc = env["recipients"][0]
    assert rc["address"] == "bob@dst.test", rc
    assert rc["orcpt"] and rc["orcpt"].lower() == "rfc822;bob@dst.test", rc
    assert sorted(rc["notify"]) == ["delay", "success"], rc
    assert rc["state"] in ("pending", "deferred"), rc
    assert "report" in env
    v.wait_log(rf"{qid}: queued from=<alice@src\.test> nrcpt=1 size={len(eml)}")

    # KEEP: the relay refuses the connection, the recipient stays deferred.
    def deferred():
        e = v.envelope(qid)
        return e["recipients"][0]["state"] == "deferred" and e

    e = wait_until(deferred, 10, "recipient deferred")
    assert "127.0.0.1" in (e["recipients"][0]["result"] or ""), e
    assert v.queue_files("incoming") == [qid + ".eml", qid + ".json"]
    wait_until(lambda: v.queue_files("tmp") == [], 5, "tmp/ empty")
    v.stop()


def test_delivered_then_removed():
    v = make().start()
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test", "carol@dst.test"], message("delivered"))
    assert r.code == 250 and qid, r
    bob = v.wait_maildir("bob@dst.test")
    carol = v.wait_maildir("carol@dst.test")
    assert len(bob) == 1 and len(carol) == 1 and len(v.all_delivered()) == 2, v.all_delivered()
    assert all(f.startswith((v.maildir("bob@dst.test") + "/new/", v.maildir("carol@dst.test") + "/new/"))
               for f in v.all_delivered()), v.all_delivered()
    for who, got in (("bob", bob[0]), ("carol", carol[0])):
        head = f"Return-Path: <alice@src.test>\nDelivered-To: {who}@dst.test\nReceived: ".encode()
        assert got.startswith(head), got[:200]
        assert b"\nSubject: delivered\n" in got and b"\r" not in got, got[:400]
        # two recipients: the Received header names none of them
        received = unfold(got.split(b"\n\n")[0].decode().replace("\n", "\r\n")).split("\r\n")[2]
        assert f"id {qid};" in received and " for <" not in received, received
    wait_until(lambda: v.queue_files("incoming") == [], 10, "queue files removed after delivery")
    assert v.queue_files("tmp") == []
    # the queue id on the line (as "id=ID" or "ID:"), then the recipient
    v.wait_log(rf"\b{qid}\b.* to=<bob@dst\.test> delivered maildir={re.escape(v.maildir('bob@dst.test'))}/new/")
    v.stop()


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_fsync_order_before_250():
    """The file fsync'ed, then renamed, then the directory fsync'ed -- all
    before the 250 leaves.  Seen with strace -f -y (fds with their paths)."""
    v = make(delivery=KEEP)
    v.write_config()
    trace = os.path.join(v.dir, "strace.out")
    log = open(os.path.join(v.dir, "vsmtpd.log"), "ab")
    p = subprocess.Popen(["strace", "-f", "-y", "-s", "160", "-o", trace, "-e",
                          "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,"
                          "write,writev,send,sendto,sendmsg", VSMTPD, "-c", v.conf_path],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=v.dir)
    log.close()
    taplib._procs.append(p)
    wait_until(lambda: is_listening(v.port) or p.poll() is not None, 20, "vsmtpd under strace")
    assert p.poll() is None, v.log()[-2000:]
    try:
        r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("fsync order"))
        assert r.code == 250 and qid, r
    finally:
        for child in _children(p.pid):
            os.kill(child, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    lines = read(trace, "r").splitlines()

    def first(pred, what, after=-1):
        for i, l in enumerate(lines):
            if i > after and pred(l):
                return i
        raise AssertionError(f"strace: no {what}; trace tail:\n" + "\n".join(lines[-80:]))

    reply = first(lambda l: f"250 2.0.0 Ok: queued as {qid}" in l
                  and re.search(r"\b(write|writev|send|sendto|sendmsg)\(", l), "write of the 250")
    moved = []
    for ext in ("eml", "json"):
        sync = first(lambda l: re.search(rf"\bf(data)?sync\(\d+<[^>]*/queue/tmp/{qid}\.{ext}>", l),
                     f"fsync of tmp/{qid}.{ext}")
        move = first(lambda l: re.search(r"\b(rename|renameat2?|link|linkat)\(", l)
                     and f"/incoming/{qid}.{ext}" in l, f"rename/link into incoming/{qid}.{ext}")
        assert sync < move < reply, (ext, "fsync", sync, "move", move, "250", reply)
        moved.append(move)
    dsync = first(lambda l: re.search(r"\bf(data)?sync\(\d+<[^>]*/queue/incoming>\)", l),
                  "fsync of the incoming/ directory after the renames", after=max(moved))
    assert dsync < reply, ("directory fsync", dsync, "250", reply)


# ---- kill -9 ------------------------------------------------------------------------


def spool_report(v):
    """What is where, the corrupt files and the log: for failure messages."""
    out = [f"{a}/: {v.queue_files(a)}" for a in ("tmp", "incoming", "hold", "corrupt")]
    for f in v.queue_files("corrupt"):
        with open(os.path.join(v.queue_dir, "corrupt", f), "rb") as fh:
            out.append(f"corrupt/{f}: {fh.read()[:400]!r}")
    out.append("log:\n" + v.log()[-3000:])
    return "\n".join(out)


def nothing_anywhere(v):
    for area in ("tmp", "incoming", "hold", "corrupt"):
        assert v.queue_files(area) == [], (area, v.queue_files(area))
    assert v.all_delivered() == [], v.all_delivered()
    rc, out, err = v.ctl("queue", "list")
    assert not re.search(r"\b[0-9A-F]{16}\b", out), out


def test_kill9_before_final_reply():
    v = make().start()
    with v.smtp() as c:
        c.ehlo("client.test")
        assert c.cmd("MAIL FROM:<alice@src.test>").code == 250
        assert c.cmd("RCPT TO:<bob@dst.test>").code == 250
        assert c.cmd("DATA").code == 354
        # Large enough to be written to tmp/ already; no final dot.
        c.send(message("never acknowledged") + (b"y" * 998 + b"\r\n") * 300)
        time.sleep(0.5)
        v.kill9()
    partial = v.queue_files("tmp")
    # The spool is written while the data arrives (queue.h): the crash left a
    # partial message in tmp/, which recovery must remove.
    assert partial, "nothing in tmp/ during the DATA: the test would prove nothing"
    v.start()
    time.sleep(2.5)  # two queue runs: nothing may show up
    try:
        nothing_anywhere(v)
    except AssertionError as e:
        raise AssertionError(f"{e}; tmp/ before the restart held {partial}")
    # The restarted server works.
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("after restart"))
    assert r.code == 250, r
    v.wait_maildir("bob@dst.test")
    v.stop()


def test_kill9_after_250_stays_queued():
    v = make(delivery=KEEP).start()
    with v.smtp() as c:
        c.ehlo("client.test")
        r = transaction(c, message("kill after 250"))
        v.kill9()  # right after reading the 250
    assert r.code == 250, r
    qid = queue_id(r)
    v.start()
    assert v.queue_files("incoming") == [qid + ".eml", qid + ".json"], spool_report(v)
    assert v.queue_files("corrupt") == [], spool_report(v)
    # tmp/ was emptied; the restarted runner's envelope rewrites (every
    # deferred attempt) pass through it, so look for a moment without one.
    assert qid + ".eml" not in v.queue_files("tmp"), spool_report(v)
    wait_until(lambda: v.queue_files("tmp") == [], 5, "tmp/ empty")
    rc, out, err = v.ctl("queue", "list")
    assert qid in out, out
    raw = ctl(v, "queue", "show", qid, "--format", "raw", binary=True).stdout
    assert raw == v.queued_message(qid)
    assert b"\r\nSubject: kill after 250\r\n" in raw
    v.stop()


def test_kill9_after_250_maildir_never_lost():
    """Twenty messages in one session, kill -9 right after the last 250, so
    deliveries are cut anywhere (before, during, after the envelope
    update): after restart each is in the maildir once or twice, never zero."""
    v = make().start()
    n = 20
    ids = []
    with v.smtp() as c:
        c.ehlo("client.test")
        for i in range(n):
            r = transaction(c, message(f"durable {i}"))
            assert r.code == 250, (i, r)
            ids.append(queue_id(r))
        v.kill9()
    # queue ids are unique and time-ordered
    assert ids == sorted(set(ids)), ids
    v.start()
    wait_until(lambda: v.queue_files("incoming") == [], 20, "queue drained after restart")
    counts = {i: 0 for i in range(n)}
    for f in v.all_delivered():
        m = re.search(rb"\nSubject: durable (\d+)\n", read(f))
        assert m, f
        counts[int(m.group(1))] += 1
    assert all(1 <= c <= 2 for c in counts.values()), counts
    assert v.queue_files("tmp") == [] and v.queue_files("corrupt") == []
    v.stop()


# ---- SIGTERM ------------------------------------------------------------------------


def not_served(port):
    """No new session starts: the connection is refused, reset, closed,
    answered 421 or left waiting -- never greeted with 220."""
    import socket
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return True
    with s:
        s.settimeout(2)
        try:
            first = s.recv(512)
        except OSError:  # timeout or reset
            return True
    return not first.startswith(b"220")


def test_sigterm_lets_a_transaction_in_flight_finish():
    """SIGTERM drains: a client in the middle of its DATA may finish within
    [vpsd] drain_timeout and gets its 250; the message is queued, new
    connections are refused, and it is delivered after the restart."""
    v = make(delivery=KEEP)
    v.settings["vpsd"] = {"drain_timeout": "10s"}
    v.start()
    with v.smtp() as c:
        c.ehlo("client.test")
        assert c.cmd("MAIL FROM:<alice@src.test>").code == 250
        assert c.cmd("RCPT TO:<bob@dst.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(message("in flight")[:40])
        v.proc.send_signal(signal.SIGTERM)
        v.wait_log("draining")
        assert not_served(v.port), "a new session was served while draining"
        c.send(message("in flight")[40:] + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        qid = queue_id(r)
        c.cmd("QUIT")
    assert v.proc.wait(timeout=15) == 0, v.log()[-2000:]
    assert v.queue_files("incoming") == [qid + ".eml", qid + ".json"], spool_report(v)
    assert b"\r\nSubject: in flight\r\n" in v.queued_message(qid)
    v.settings["delivery"] = {"default": "maildir:{dir}/mail/%d/%l"}
    v.start()
    msgs = v.wait_maildir("bob@dst.test")
    assert len(msgs) == 1 and b"\nSubject: in flight\n" in msgs[0], msgs
    v.stop()


def test_sigterm_closes_sessions_with_421():
    """A session that SIGTERM closes -- idle at once, or one still in a
    transaction when drain_timeout runs out -- is told why: RFC 5321 3.8
    lets a server close a connection on its own only after a 421
    (proto/mail's "421 4.3.2 Service shutting down")."""
    v = make()
    v.settings["vpsd"] = {"drain_timeout": "1s"}
    v.start()
    idle, busy = v.smtp(), v.smtp()
    idle.ehlo("client.test")
    busy.ehlo("client.test")
    assert busy.cmd("MAIL FROM:<alice@src.test>").code == 250
    v.proc.send_signal(signal.SIGTERM)
    for name, c in (("idle", idle), ("in a transaction", busy)):
        assert c.closed(5), f"{name}: not closed"
        got = c.pending()
        c.close()
        assert got.startswith(b"421 4.3.2 "), (name, got)
    assert v.proc.wait(timeout=10) == 0


# ---- recovery of corrupt files ---------------------------------------------------------


def test_corrupt_queue_files_at_start():
    # A real envelope to copy from: one message queued with KEEP (it stays).
    v = make(delivery=KEEP).start()
    r, tid = v.send_mail("alice@src.test", ["bob@dst.test"], message("template"))
    assert r.code == 250, r
    v.stop()
    inc = os.path.join(v.queue_dir, "incoming")
    tmpl_eml = v.queued_message(tid)
    tmpl = v.envelope(tid)
    os.unlink(os.path.join(inc, tid + ".json"))
    os.unlink(os.path.join(inc, tid + ".eml"))
    base = int(tid, 16) - 1_000_000
    kinds = ["truncated", "otherid", "nomessage", "noenvelope", "good"]
    ids = {k: "%016X" % (base + i) for i, k in enumerate(kinds)}

    def env_for(qid):
        e = dict(tmpl, id=qid, attempts=0, next_attempt=None)
        e["recipients"] = [dict(r, state="pending", result=None) for r in tmpl["recipients"]]
        return json.dumps(e).encode()

    t, o, nm, ne, g = (ids[k] for k in kinds)
    write(os.path.join(inc, t + ".eml"), tmpl_eml)
    whole = env_for(t)
    write(os.path.join(inc, t + ".json"), whole[:len(whole) // 2])
    write(os.path.join(inc, o + ".eml"), tmpl_eml)
    write(os.path.join(inc, o + ".json"), env_for("%016X" % (base + 99)))
    write(os.path.join(inc, nm + ".json"), env_for(nm))
    write(os.path.join(inc, ne + ".eml"), tmpl_eml)
    write(os.path.join(inc, g + ".eml"), tmpl_eml)
    write(os.path.join(inc, g + ".json"), env_for(g))
    for f in os.listdir(inc):
        os.chmod(os.path.join(inc, f), 0o600)
    # Deliver into the maildir now, so that "good" really goes out.
    v.settings["delivery"] = {"default": "maildir:{dir}/mail/%d/%l"}
    v.start()
    v.wait_maildir("bob@dst.test")
    time.sleep(3)  # three queue runs: a loop would show in the log
    assert v.alive(), "vsmtpd died on corrupt queue files"
    corrupt = v.queue_files("corrupt")
    for k in ("truncated", "otherid", "nomessage"):
        assert any(f.startswith(ids[k]) for f in corrupt), (k, corrupt)
    assert t + ".eml" in corrupt and o + ".eml" in corrupt, corrupt
    assert not any(f.startswith(ne) for f in corrupt), ("an incomplete commit is removed", corrupt)
    assert v.queue_files("incoming") == [], v.queue_files("incoming")
    assert v.queue_files("tmp") == []
    assert len(v.all_delivered()) == 1, v.all_delivered()
    log = v.log()
    for k in ("truncated", "otherid", "nomessage"):
        hits = [l for l in log.splitlines() if ids[k] in l]
        assert hits, (k, ids[k], log[-3000:])
        assert len(hits) <= 2, (k, "logged again and again:", hits)
    assert re.search(rf"{t}.*corrupt", log), log[-3000:]
    # Still serving.
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("after corrupt"))
    assert r.code == 250, r
    v.stop()


# ---- storage failures --------------------------------------------------------------------


def shim_env(**env):
    assert SHIM and os.path.exists(SHIM), f"the ENOSPC shim is not built: {SHIM!r}"
    # An ASan build of vsmtpd wants its runtime first in the preload list.
    e = {"LD_PRELOAD": SHIM,
         "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")}
    e.update(env)
    return e


def assert_no_partial_files(v):
    for area in ("tmp", "incoming"):
        assert v.queue_files(area) == [], (area, v.queue_files(area))


def test_enospc_on_every_write():
    v = start_with_env(make(), shim_env(VPS_SHIM_ENOSPC="1"))
    with v.smtp() as c:
        c.ehlo("client.test")
        r = transaction(c, message("enospc"))
        assert (r.code, r.text) == (451, "4.3.0 Error: queue file write error"), r
        assert c.cmd("RSET").code == 250  # the session goes on
    v.wait_log("enospc-shim: ")
    assert_no_partial_files(v)
    time.sleep(1.5)
    assert v.all_delivered() == []
    assert v.alive()
    v.stop()


def test_enospc_after_some_bytes():
    v = start_with_env(make(), shim_env(VPS_SHIM_ENOSPC_AFTER="100000"))
    # A small message fits: the shim lets normal work through.
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("small"))
    assert r.code == 250, r
    v.wait_maildir("bob@dst.test")
    wait_until(lambda: v.queue_files("incoming") == [], 10, "small message left the queue")
    # A large one crosses the limit in the middle of the file.
    big = message("big", body="z" * 900 + "\r\n") + (b"z" * 900 + b"\r\n") * 400
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], big)
    assert (r.code, r.text) == (451, "4.3.0 Error: queue file write error"), r
    v.wait_log("enospc-shim: ")
    assert_no_partial_files(v)
    time.sleep(1.5)
    assert len(v.all_delivered()) == 1, v.all_delivered()
    v.stop()


def test_fsync_failure():
    v = start_with_env(make(), shim_env(VPS_SHIM_ENOSPC="fsync"))
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("fsync fails"))
    assert (r.code, r.text) == (451, "4.3.0 Error: queue file write error"), r
    v.wait_log("enospc-shim: f(data)?sync")
    assert_no_partial_files(v)
    time.sleep(1.5)
    assert v.all_delivered() == []
    v.stop()


def test_rename_failure():
    """A rename into incoming/ that fails (here: the directory made
    immutable, which stops root too) is a queue write error like ENOSPC."""
    v = make().start()
    inc = os.path.join(v.queue_dir, "incoming")
    subprocess.run(["chattr", "+i", inc], check=True, timeout=30)
    try:
        r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("rename fails"))
        assert (r.code, r.text) == (451, "4.3.0 Error: queue file write error"), r
        assert_no_partial_files(v)
    finally:
        subprocess.run(["chattr", "-i", inc], check=True, timeout=30)
    time.sleep(1.5)
    assert v.all_delivered() == [], v.all_delivered()
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("rename works"))
    assert r.code == 250, r
    msgs = v.wait_maildir("bob@dst.test")
    assert len(msgs) == 1 and b"\nSubject: rename works\n" in msgs[0], msgs
    v.stop()


def test_min_free_452_at_mail():
    v = make(queue={"min_free": "1000G"})
    st = os.statvfs(v.dir)
    assert st.f_bavail * st.f_frsize < 1000 * 2**30, "the test disk has more than 1000G free"
    v.start()
    with v.smtp() as c:
        c.ehlo("client.test")
        r = c.cmd("MAIL FROM:<alice@src.test>")
        assert (r.code, r.text) == (452, "4.3.1 Insufficient system storage"), r
        assert c.cmd("NOOP").code == 250
    assert_no_partial_files(v)
    v.stop()


# ---- vpsctl queue on a running vsmtpd ------------------------------------------------------


def test_vpsctl_queue_commands():
    """Messages stay queued while the delivery stage routes them to a relay
    that refuses connections (deferred, retried after retry_min = 1s); a
    reload without that
    rule lets [delivery] default (the maildir) deliver -- except what is
    held, until it is released."""
    v = make(rules='delivery { rule "gate" => deliver relay "[127.0.0.1]:1" }\n',
             queue={"retry_min": "1s"}).start()
    r1, one = v.send_mail("alice@src.test", ["bob@dst.test"], message("one"))
    r2, two = v.send_mail("alice@src.test", ["bob@dst.test"], message("two"))
    assert one and two and one < two, (r1, r2)
    rc, out, err = v.ctl("queue", "list")
    assert one in out and two in out, out
    raw = ctl(v, "queue", "show", one, "--format", "raw", binary=True).stdout
    assert raw == v.queued_message(one), raw[:300]
    assert raw == ctl(v, "queue", "show", one, binary=True).stdout  # raw is the default
    env = json.loads(ctl(v, "queue", "show", one, "--format", "json").stdout)
    assert env["id"] == one and env["sender"] == "alice@src.test", env
    assert [x["address"] for x in env["recipients"]] == ["bob@dst.test"], env
    # hold: moved to hold/, listed with --hold only
    ctl(v, "queue", "hold", one)
    assert v.queue_files("hold") == [one + ".eml", one + ".json"], spool_report(v)
    assert not any(f.startswith(one) for f in v.queue_files("incoming")), spool_report(v)
    assert one not in v.ctl("queue", "list")[1]
    held = json.loads(v.ctl("queue", "list", "--hold", "--json")[1])
    assert [(m["id"], m["area"]) for m in held] == [(one, "hold")], held
    # delete: gone everywhere
    ctl(v, "queue", "delete", two)
    assert not any(f.startswith(two) for f in v.queue_files("incoming") + v.queue_files("hold"))
    assert two not in v.ctl("queue", "list")[1]
    assert ctl(v, "queue", "show", two, check=False).returncode == 1
    # ids that are not ids never reach the file system (a usage error)
    for bad in ("../../etc/passwd", one[:-1], "zzzzzzzzzzzzzzzz", "../hold/" + one):
        p = ctl(v, "queue", "show", bad, check=False)
        assert p.returncode == 2 and p.stdout == "", (bad, p.returncode, p.stdout)
    # Open the gate: the held message is still not delivered ...
    with open(v.rules_path, "w") as f:
        f.write("")
    v.proc.send_signal(signal.SIGHUP)
    v.wait_log(r"generation=2 ")
    time.sleep(3)  # three queue runs
    assert v.all_delivered() == [], "a held message was delivered"
    assert v.queue_files("hold") == [one + ".eml", one + ".json"], spool_report(v)
    # ... until it is released.
    ctl(v, "queue", "release", one)
    msgs = v.wait_maildir("bob@dst.test", timeout=10)
    assert len(msgs) == 1 and b"\nSubject: one\n" in msgs[0], msgs
    wait_until(lambda: v.queue_files("incoming") == [] and v.queue_files("hold") == [], 10,
               "queue empty")
    assert ctl(v, "queue", "release", one, check=False).returncode == 1
    v.stop()


if __name__ == "__main__":
    run([test_queue_files_after_250_and_envelope, test_delivered_then_removed,
         test_fsync_order_before_250, test_kill9_before_final_reply,
         test_kill9_after_250_stays_queued, test_kill9_after_250_maildir_never_lost,
         test_sigterm_lets_a_transaction_in_flight_finish, test_sigterm_closes_sessions_with_421,
         test_corrupt_queue_files_at_start, test_enospc_on_every_write,
         test_enospc_after_some_bytes, test_fsync_failure, test_rename_failure,
         test_min_free_452_at_mail,
         test_vpsctl_queue_commands])
