#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`vpsctl queue` on a spool built by hand, file for file as a commit of
vsmtpd leaves it (mta/queue.h; the envelope in the JSON form of
vps_envelope_to_json, written here with Python's json): list (text and
--json, incoming and --hold), show (raw bytes, the stored envelope),
hold, release, delete, several ids at once, an unknown id (exit 1, the
others still done), a corrupt envelope, and ids that are not ids ("../x"
and friends: exit 2, nothing touched, even with valid ids beside them).
The envelope format is a contract with other writers: a file Python
writes here must be read by the C reader (list loads every envelope
strictly)."""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir

VPSCTL = os.environ.get("VPSCTL", "")

# Ids are 16 upper-case hex digits (microseconds since the epoch).
ID1 = "00064A1B2C3D4E01"
ID2 = "00064A1B2C3D4E02"
ID3 = "00064A1B2C3D4E03"

MSG1 = (b"Received: from client.example.net\r\n"
        b"From: J\xc3\xb6rg <j\xc3\xb6rg@example.net>\r\n"
        b"Subject: first\r\n\r\nbody with a NUL \x00 and 8-bit \xff bytes\r\n.\r\n..\r\n")
MSG2 = b"Subject: second\r\n\r\nhello\r\n"
MSG3 = b"Subject: third\r\n\r\n" + b"x" * 70000 + b"\r\n"


def envelope(qid, size, sender, rcpts, received="2025-11-28T21:40:00.123456Z"):
    """The envelope exactly as vps_envelope_to_json writes it (member order
    included)."""
    return {
        "id": qid, "sender": sender, "ret": None, "envid": None, "body": "8BITMIME",
        "smtputf8": True, "size": size, "received": received, "session": "S1",
        "client": {"ip": "192.0.2.1", "ptr": None, "helo": "client.example.net",
                   "auth_user": None, "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384"},
        "attempts": 0, "next_attempt": None,
        "recipients": [{"address": a, "orcpt": None, "notify": [], "state": s,
                        "result": None, "updated": None} for a, s in rcpts],
        "report": {"verdict": "accept"},
    }


def commit(spool, area, qid, msg, env):
    """What a commit leaves: the message, then the envelope (the commit
    point), mode 0600, compact JSON with a final LF."""
    d = os.path.join(spool, area)
    with open(os.path.join(d, qid + ".eml"), "wb") as f:
        f.write(msg)
    with open(os.path.join(d, qid + ".json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(env, ensure_ascii=False, separators=(",", ":")) + "\n")
    for ext in (".eml", ".json"):
        os.chmod(os.path.join(d, qid + ext), 0o600)


def make_spool():
    d = tmpdir()
    spool = os.path.join(d, "spool")
    for sub in ("tmp", "incoming", "hold", "corrupt"):
        os.makedirs(os.path.join(spool, sub), mode=0o700)
    conf = os.path.join(d, "vps.conf")
    with open(conf, "w") as f:
        f.write("[queue]\ndir = spool\n")  # relative to the config file
    envs = {
        ID1: envelope(ID1, len(MSG1), "jörg@example.net",
                      [("ελένη@παράδειγμα.ελ", "pending"), ("bob@example.org", "deferred")]),
        ID2: envelope(ID2, len(MSG2), "", [("carol@example.org", "pending")],
                      received="2025-11-28T21:41:00.000001Z"),
        ID3: envelope(ID3, len(MSG3), "alice@example.net", [("dave@example.org", "pending")]),
    }
    commit(spool, "incoming", ID1, MSG1, envs[ID1])
    commit(spool, "incoming", ID2, MSG2, envs[ID2])
    commit(spool, "hold", ID3, MSG3, envs[ID3])
    return spool, conf, envs


def ctl(conf, *args):
    p = subprocess.run([VPSCTL, "-c", conf, "queue", *args], capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def ok(conf, *args):
    rc, out, err = ctl(conf, *args)
    assert rc == 0, (args, rc, err)
    return out


def files(spool):
    """Every file under the spool with its content: to see nothing moved."""
    out = {}
    for root, _, names in os.walk(os.path.dirname(spool)):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, spool)] = f.read()
    return out


def ids(conf, *extra):
    return [e["id"] for e in json.loads(ok(conf, "list", "--json", *extra))]


def test_list_text():
    spool, conf, envs = make_spool()
    lines = ok(conf, "list").decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].split()[:4] == [ID1, "2025-11-28T21:40:00Z", str(len(MSG1)), "0"], lines[0]
    assert lines[0].endswith("<jörg@example.net> -> ελένη@παράδειγμα.ελ (pending), "
                             "bob@example.org (deferred)"), lines[0]
    assert lines[1].startswith(ID2 + " 2025-11-28T21:41:00Z"), lines[1]
    assert lines[1].endswith("<> -> carol@example.org (pending)"), lines[1]
    held = ok(conf, "list", "--hold").decode().splitlines()
    assert len(held) == 1 and held[0].startswith(ID3 + " "), held


def test_list_json():
    spool, conf, envs = make_spool()
    got = json.loads(ok(conf, "list", "--json"))
    assert [e["id"] for e in got] == [ID1, ID2], got
    e = got[0]
    assert e == {"id": ID1, "area": "incoming", "received": "2025-11-28T21:40:00.123456Z",
                 "size": len(MSG1), "sender": "jörg@example.net", "attempts": 0,
                 "next_attempt": None,
                 "recipients": [{"address": "ελένη@παράδειγμα.ελ", "state": "pending",
                                 "result": None},
                                {"address": "bob@example.org", "state": "deferred",
                                 "result": None}]}, e
    held = json.loads(ok(conf, "list", "--hold", "--json"))
    assert [(e["id"], e["area"]) for e in held] == [(ID3, "hold")], held
    # an empty area is an empty array
    for n in os.listdir(os.path.join(spool, "hold")):
        os.unlink(os.path.join(spool, "hold", n))
    assert json.loads(ok(conf, "list", "--hold", "--json")) == []


def test_show():
    spool, conf, envs = make_spool()
    assert ok(conf, "show", ID1) == MSG1
    assert ok(conf, "show", ID1, "--format", "raw") == MSG1
    assert ok(conf, "show", ID3) == MSG3  # held messages too
    out = ok(conf, "show", ID1, "--format", "json")
    assert json.loads(out) == envs[ID1]
    assert b"\n  " in out  # pretty-printed
    # the members in the stored order
    assert list(json.loads(out).keys()) == list(envs[ID1].keys())
    rc, _, err = ctl(conf, "show", ID1, "--format", "yaml")
    assert rc == 2, (rc, err)


def test_hold_release():
    spool, conf, envs = make_spool()
    assert ok(conf, "hold", ID1) == f"held {ID1}\n".encode()
    assert ids(conf) == [ID2]
    assert ids(conf, "--hold") == [ID1, ID3]
    assert sorted(os.listdir(os.path.join(spool, "hold"))) == sorted(
        [ID1 + ".eml", ID1 + ".json", ID3 + ".eml", ID3 + ".json"])
    assert ok(conf, "show", ID1) == MSG1
    # holding a held message changes nothing
    assert ok(conf, "hold", ID1) == f"held {ID1}\n".encode()
    out = ok(conf, "release", ID1, ID3)
    assert out == f"released {ID1}\nreleased {ID3}\n".encode(), out
    assert ids(conf) == [ID1, ID2, ID3]
    assert os.listdir(os.path.join(spool, "hold")) == []
    assert os.listdir(os.path.join(spool, "tmp")) == []
    # byte for byte where they were
    with open(os.path.join(spool, "incoming", ID3 + ".eml"), "rb") as f:
        assert f.read() == MSG3
    assert json.loads(ok(conf, "show", ID3, "--format", "json")) == envs[ID3]


def test_delete():
    spool, conf, envs = make_spool()
    assert ok(conf, "delete", ID2, ID3) == f"deleted {ID2}\ndeleted {ID3}\n".encode()
    assert ids(conf) == [ID1]
    assert ids(conf, "--hold") == []
    assert sorted(os.listdir(os.path.join(spool, "incoming"))) == [ID1 + ".eml", ID1 + ".json"]
    # deleted: show and a second delete fail with exit 1
    rc, out, err = ctl(conf, "show", ID2)
    assert rc == 1 and out == b"" and ID2 in err, (rc, out, err)
    rc, out, err = ctl(conf, "delete", ID2)
    assert rc == 1 and "not in the queue" in err, (rc, out, err)


def test_unknown_id_others_done():
    spool, conf, envs = make_spool()
    missing = "00064A1B2C3D4EFF"
    rc, out, err = ctl(conf, "hold", missing, ID2)
    assert rc == 1, (rc, out, err)
    assert out == f"held {ID2}\n".encode(), out
    assert f"vpsctl: {missing}: not in the queue" in err, err
    assert ids(conf, "--hold") == [ID2, ID3]


def test_bad_ids_refused():
    spool, conf, envs = make_spool()
    # files a traversal would reach
    with open(os.path.join(spool, "x.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(spool, "x.eml"), "w") as f:
        f.write("secret")
    before = files(spool)
    for bad in ("../x", "../../spool/x", "", "00064a1b2c3d4e01", ID1 + "/..", ID1[:-1],
                ID1 + "0", "-"):
        for cmd in (["show", bad], ["show", bad, "--format", "json"], ["delete", bad],
                    ["hold", bad], ["release", bad], ["delete", ID1, bad],
                    ["hold", ID2, bad]):
            rc, out, err = ctl(conf, *cmd)
            assert rc == 2, (cmd, rc, out, err)
            assert out == b"", (cmd, out)
            assert files(spool) == before, cmd
    rc, out, err = ctl(conf, "delete")
    assert rc == 2, (rc, err)


def test_corrupt_envelope():
    spool, conf, envs = make_spool()
    # CR LF in a recipient (CVE-2020-28026): refused by the reader
    bad = dict(envs[ID2])
    bad["recipients"] = [{"address": "carol@example.org\r\nDATA", "state": "pending"}]
    commit(spool, "incoming", ID2, MSG2, bad)
    rc, out, err = ctl(conf, "list")
    assert rc == 1, (rc, out, err)
    assert out.decode().startswith(ID1 + " "), out  # the others still listed
    assert ID2 in err and "control character" in err, err
    # an envelope without the required sender
    bad = dict(envs[ID2])
    del bad["sender"]
    commit(spool, "incoming", ID2, MSG2, bad)
    rc, out, err = ctl(conf, "list", "--json")
    assert rc == 1 and [e["id"] for e in json.loads(out)] == [ID1], (rc, out, err)
    assert "sender" in err, err
    # show --format json prints what is stored, for the admin to see
    assert "sender" not in json.loads(ok(conf, "show", ID2, "--format", "json"))


def test_no_spool():
    d = tmpdir()
    conf = os.path.join(d, "vps.conf")
    with open(conf, "w") as f:
        f.write("[queue]\ndir = nowhere\n")
    rc, out, err = ctl(conf, "list")
    assert rc == 1 and "nowhere" in err, (rc, err)
    assert not os.path.exists(os.path.join(d, "nowhere"))  # nothing made


def bury(spool, qid, msg, env):
    """What vps_queue_bury leaves: the pair in dead/ (made on demand, as
    an older spool may not have it)."""
    os.makedirs(os.path.join(spool, "dead"), mode=0o700, exist_ok=True)
    commit(spool, "dead", qid, msg, env)


def test_dead():
    spool, conf, envs = make_spool()
    dead = dict(envs[ID2], recipients=[{"address": "carol@example.org", "orcpt": None,
                                        "notify": [], "state": "failed",
                                        "result": "550 5.1.1 no such user", "updated": None}])
    os.unlink(os.path.join(spool, "incoming", ID2 + ".json"))
    os.unlink(os.path.join(spool, "incoming", ID2 + ".eml"))
    bury(spool, ID2, MSG2, dead)
    got = json.loads(ok(conf, "list", "--dead", "--json"))
    assert [(e["id"], e["area"]) for e in got] == [(ID2, "dead")], got
    assert got[0]["recipients"] == [{"address": "carol@example.org", "state": "failed",
                                     "result": "550 5.1.1 no such user"}], got
    lines = ok(conf, "list", "--dead").decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ID2 + " "), lines
    assert lines[0].endswith("carol@example.org (failed)"), lines
    assert ids(conf) == [ID1]  # not in incoming/'s listing
    rc, _, err = ctl(conf, "list", "--dead", "--hold")
    assert rc == 2, (rc, err)
    # show finds it in dead/
    assert ok(conf, "show", ID2) == MSG2
    assert json.loads(ok(conf, "show", ID2, "--format", "json")) == dead
    # a corrupt envelope in dead/ is reported like one in incoming/
    id4 = "00064A1B2C3D4E04"
    bury(spool, id4, MSG3, dict(envs[ID3], id=ID1))
    rc, out, err = ctl(conf, "list", "--dead", "--json")
    assert rc == 1 and [e["id"] for e in json.loads(out)] == [ID2], (rc, out, err)
    assert id4 in err, err
    # delete removes from dead/ (both files), then it is gone; incoming/ and
    # hold/ come first (ID3 is held)
    assert ok(conf, "delete", ID2, id4) == f"deleted {ID2}\ndeleted {id4}\n".encode()
    assert os.listdir(os.path.join(spool, "dead")) == []
    assert ids(conf, "--hold") == [ID3]
    rc, out, err = ctl(conf, "show", ID2)
    assert rc == 1 and "not in the queue" in err, (rc, out, err)
    rc, out, err = ctl(conf, "delete", ID2)
    assert rc == 1 and "not in the queue" in err, (rc, out, err)
    assert ids(conf, "--dead") == []


def due_later(spool, conf, envs, qid, area="incoming"):
    env = dict(envs[qid], attempts=3, next_attempt="2099-01-01T00:00:00.000000Z")
    path = os.path.join(spool, area, qid + ".eml")
    with open(path, "rb") as f:
        msg = f.read()
    commit(spool, area, qid, msg, env)
    return env


def test_retry():
    spool, conf, envs = make_spool()
    env1 = due_later(spool, conf, envs, ID1)
    env2 = due_later(spool, conf, envs, ID2)
    rc, out, err = ctl(conf, "retry", ID1)
    assert rc == 0, (rc, err)
    # no vsmtpd holds the lock: said so, exit 0
    assert out.decode() == f"due now {ID1}\nvsmtpd is not running: the next start delivers them\n", out
    got = json.loads(ok(conf, "show", ID1, "--format", "json"))
    # only next_attempt changed (the writer may add members of its own)
    assert {k: got[k] for k in env1} == dict(env1, next_attempt=None), got
    assert json.loads(ok(conf, "show", ID2, "--format", "json")) == env2
    assert os.listdir(os.path.join(spool, "tmp")) == []
    # a held message is not retried (release is for that); others still done
    rc, out, err = ctl(conf, "retry", ID3, ID2)
    assert rc == 1 and f"due now {ID2}" in out.decode() and "held" in err, (rc, out, err)
    assert json.loads(ok(conf, "show", ID2, "--format", "json"))["next_attempt"] is None
    # unknown and bad ids
    rc, out, err = ctl(conf, "retry", "00064A1B2C3D4EFF")
    assert rc == 1 and "not in the queue" in err, (rc, out, err)
    before = files(spool)
    for cmd in (["retry"], ["retry", "../x"], ["retry", ID1, "../x"], ["flush", ID1]):
        rc, out, err = ctl(conf, *cmd)
        assert rc == 2 and out == b"", (cmd, rc, out, err)
        assert files(spool) == before, cmd


def test_flush():
    spool, conf, envs = make_spool()
    due_later(spool, conf, envs, ID1)
    due_later(spool, conf, envs, ID2)
    held = due_later(spool, conf, envs, ID3, area="hold")
    rc, out, err = ctl(conf, "flush")
    assert rc == 0, (rc, err)
    assert out.decode().startswith("2 messages due now\n"), out
    for qid in (ID1, ID2):
        assert json.loads(ok(conf, "show", qid, "--format", "json"))["next_attempt"] is None
    assert json.loads(ok(conf, "show", ID3, "--format", "json")) == held  # hold/ untouched
    # again: nothing to change, still fine
    assert ok(conf, "flush").decode().startswith("2 messages due now\n")


def test_wake_pid_from_lock():
    """A lock held by another process (flock, as vsmtpd holds it) with a
    pid in it: SIGUSR1 goes to that pid; a pid that is not there is an
    error (exit 1); no lock file or a lock nobody holds: not running."""
    import fcntl, signal
    spool, conf, envs = make_spool()
    lock = os.path.join(spool, "lock")
    # a child that waits for SIGUSR1 (and says so) while we hold the lock
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal,sys\n"
                              "signal.signal(signal.SIGUSR1, lambda *a: (print('usr1', flush=True),"
                              " sys.exit(0)))\n"
                              "print('ready', flush=True)\nsignal.pause()\n"],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{child.pid}\n".encode())
        rc, out, err = ctl(conf, "flush")
        assert rc == 0 and f"vsmtpd (pid {child.pid}) asked to scan" in out.decode(), (rc, out, err)
        assert child.stdout.readline() == b"usr1\n"
        assert child.wait(timeout=10) == 0
        # held, but the pid is gone (or garbage): exit 1, said why
        for content in (f"{child.pid}\n", "", "12ab\n", "1\n"):
            os.ftruncate(fd, 0)
            os.pwrite(fd, content.encode(), 0)
            rc, out, err = ctl(conf, "retry", ID1)
            assert rc == 1 and out.decode().startswith(f"due now {ID1}"), (content, rc, out, err)
            assert "vpsctl: " in err, (content, err)
        os.close(fd)  # the lock goes with it
        rc, out, err = ctl(conf, "flush")
        assert rc == 0 and "vsmtpd is not running" in out.decode(), (rc, out, err)
        os.unlink(lock)
        rc, out, err = ctl(conf, "flush")
        assert rc == 0 and "vsmtpd is not running" in out.decode(), (rc, out, err)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


if __name__ == "__main__":
    run([test_list_text, test_list_json, test_show, test_hold_release, test_delete,
         test_unknown_id_others_done, test_bad_ids_refused, test_corrupt_envelope,
         test_no_spool, test_dead, test_retry, test_flush, test_wake_pid_from_lock])
