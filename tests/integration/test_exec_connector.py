#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `exec` connector with real scripts, in shell and in Python.

Verdicts and fields from stdout lines, the exit-status mapping, a script
that exits non-zero, one that hangs (the timeout kills its whole process
group: checked in /proc afterwards), one that floods stdout or stderr
(bounded), hostile envelope values (`$(...)`, `;`, backticks, CR/LF) that
must reach the script only as data, user switching, and the concurrency
limit under vpsd's milter front end."""
import json, os, re, shutil, socket, struct, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
import reportlib
from reportlib import milter_connect_verdict, milter_pkt, milter_read, mods, stage


def results(report, stage_name, connector="ex"):
    return reportlib.results(report, stage_name, connector)


from taplib import run, tmpdir

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]
PY = "/usr/bin/python3"

MESSAGE = ("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: lottery winner\r\n"
           "\r\nHello\r\n")


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def script(d, name, text):
    path = os.path.join(d, name)
    write(path, text, 0o755)
    return path


def make_conf(d, connectors, rules, extra=""):
    write(os.path.join(d, "rules.vsl"), rules)
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 1
[log]
level = info
[quarantine]
dir = q
names = held
{connectors}
{extra}
""")
    write(os.path.join(d, "m.eml"), MESSAGE)
    return os.path.join(d, "vps.conf")


def exec_block(command, name="ex", extra="", timeout="5s"):
    return f"[connector {name}]\ntype = exec\ncommand = {command}\ntimeout = {timeout}\n{extra}\n"


ENVELOPE = ("--from", "alice@example.com", "--rcpt", "bob@example.org", "--rcpt",
            "carol@example.org", "--client-ip", "192.0.2.7", "--helo", "mx.example.com")


def vpsctl_run(d, *args):
    p = subprocess.run([VPSCTL, "-c", os.path.join(d, "vps.conf"), "run",
                        os.path.join(d, "m.eml"), "--json", *(args or ENVELOPE)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout), p.stderr


# ---- answers -------------------------------------------------------------------

def test_shell_script_verdict_reply_headers_and_fields():
    d = tmpdir()
    script(d, "check.sh", """#!/bin/sh
echo "this line is just output"
echo "verdict=reject"
echo "code=550"
echo "enhanced=5.7.2"
echo "text=No lotteries here"
echo "add_header=X-Checked: by script"
echo "set_header=X-Set: one"
echo "insert_header=X-Top: first"
echo "remove_header=X-Old"
echo "set score=7.5"
echo "set hits=3"
echo "set spam=true"
echo "set label=lottery winner"
""")
    make_conf(d, exec_block("./check.sh"), 'data { rule "c" => call ex }\n')
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert (s["verdict"], s["code"], s["enhanced"], s["text"]) == \
        ("reject", 550, "5.7.2", "No lotteries here"), s
    (r,) = results(report, "data")
    f = r["fields"]
    assert f["exit"] == 0 and f["score"] == 7.5 and f["hits"] == 3 and f["spam"] is True, f
    assert f["label"] == "lottery winner", f
    assert f["stdout"].startswith("this line is just output\nverdict=reject\n"), f
    assert mods(report) == [("add_header", "X-Checked", "by script"),
                            ("set_header", "X-Set", "one"),
                            ("insert_header", "X-Top", "first"),
                            ("remove_header", "X-Old", None)], mods(report)


def test_rules_read_fields_and_python_script_reads_stdin_and_environment():
    d = tmpdir()
    script(d, "check.py", f"""#!{PY}
import hashlib, json, os, sys
data = sys.stdin.buffer.read()
env = {{k: v for k, v in os.environ.items()}}
with open(os.path.join({d!r}, "seen-" + env["VPS_STAGE"] + ".json"), "w") as f:
    json.dump({{"env": env, "stdin": data.decode("latin-1")}}, f)
print("set size=%d" % len(data))
print("set sha=" + hashlib.sha256(data).hexdigest()[:16])
if env["VPS_STAGE"] == "data" and b"lottery" in data:
    print("set spam=true")
""")
    make_conf(d, exec_block("./check.py"), """
connect { rule "c" => call ex }
mail { rule "m" => call ex }
rcpt { rule "r" => call ex }
data {
  rule "d" => call ex
  rule "tag" when ex.spam and ex.size > 10 and ex.exit == 0 => add_header "X-Spam" ex.sha
}
""")
    report, _ = vpsctl_run(d)
    import hashlib
    want_sha = hashlib.sha256(MESSAGE.encode()).hexdigest()[:16]
    assert ("add_header", "X-Spam", want_sha) in mods(report), mods(report)
    data = json.load(open(os.path.join(d, "seen-data.json")))
    assert data["stdin"] == MESSAGE, data["stdin"]
    env = data["env"]
    assert env["VPS_STAGE"] == "data" and env["VPS_CONNECTOR"] == "ex", env
    assert env["VPS_CLIENT_IP"] == "192.0.2.7" and env["VPS_HELO"] == "mx.example.com", env
    assert env["VPS_FROM"] == "alice@example.com", env
    assert env["VPS_RCPTS"] == "bob@example.org,carol@example.org", env
    assert env["VPS_RCPT_COUNT"] == "2" and env["VPS_SIZE"] == str(len(MESSAGE)), env
    assert env["VPS_TLS"] == "no" and env["VPS_SESSION_ID"], env
    # a clean environment: nothing of ours (e.g. VPSD from the test runner) leaks in
    assert "VPSD" not in env and "HOME" not in env, sorted(env)
    # (Python itself adds LC_CTYPE when it coerces the C locale: PEP 538)
    assert all(k in ("PATH", "LC_CTYPE") or k.startswith("VPS_") for k in env), sorted(env)
    # before data: no message on stdin
    for st in ("connect", "mail", "rcpt"):
        seen = json.load(open(os.path.join(d, f"seen-{st}.json")))
        assert seen["stdin"] == "" and seen["env"]["VPS_STAGE"] == st, seen
    rcpt = json.load(open(os.path.join(d, "seen-rcpt.json")))["env"]
    assert rcpt["VPS_RCPT"] in ("bob@example.org", "carol@example.org"), rcpt


def test_exit_status_mapping():
    d = tmpdir()
    script(d, "st.sh", '#!/bin/sh\nexit "$(cat "$(dirname "$0")/status")"\n')
    make_conf(d, exec_block("./st.sh", extra="exit_1 = reject\nexit_2 = tempfail\n"
                            "exit_3 = error\nexit_4 = quarantine\nexit_0 = accept\n"
                            "exit_other = discard\nquarantine = held\non_error = reject"),
              'data { rule "d" => call ex }\n')
    cases = [(0, "accept", False), (1, "reject", False), (2, "tempfail", False),
             (3, "reject", True), (4, "quarantine", False), (9, "discard", False),
             (255, "discard", False)]
    for status, verdict, error in cases:
        write(os.path.join(d, "status"), str(status))
        report, _ = vpsctl_run(d)
        (r,) = results(report, "data")
        assert (r["verdict"], r["error"]) == (verdict, error), (status, r)
        if not error:
            assert r["fields"]["exit"] == status, r
        if verdict == "quarantine":
            assert report["quarantine"] == "held", report


def test_non_zero_exit_without_mapping_is_an_error_even_with_a_verdict():
    d = tmpdir()
    script(d, "fail.sh", '#!/bin/sh\necho "verdict=accept"\necho "oops: broken" >&2\nexit 1\n')
    make_conf(d, exec_block("./fail.sh"), 'data { rule "d" => call ex }\n')
    report, stderr = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is True and r["verdict"] == "tempfail", r
    assert stage(report, "data")["verdict"] == "tempfail"
    assert "exit status 1" in stderr and "oops: broken" in stderr, stderr
    # a program killed by a signal
    script(d, "sig.sh", '#!/bin/sh\nkill -TERM $$\n')
    make_conf(d, exec_block("./sig.sh"), 'data { rule "d" => call ex }\n')
    report, stderr = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is True and "signal 15" in stderr, (r, stderr)
    # a program PATH does not have (looked up at call time)
    make_conf(d, exec_block("no-such-program-for-vps-tests"), 'data { rule "d" => call ex }\n')
    report, stderr = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is True, r


def test_refused_answers_give_on_error():
    d = tmpdir()
    cases = [
        "verdict=maybe",
        "verdict=reject\ncode=250",
        "verdict=tempfail\ncode=550",
        "code=99",
        "verdict=reject\ncode=550\nenhanced=4.7.1",
        "add_header=No colon here",
        "add_header=Bad Name: value",
        "set stdout=mine",
        "set 9lives=1",
        "text=tab\\tis fine but \\001 is not",
        "quarantine=../../etc\nverdict=quarantine",
    ]
    write(os.path.join(d, "answer"), "")
    script(d, "say.sh", '#!/bin/sh\nprintf "$(cat "$(dirname "$0")/answer")\\n"\n')
    make_conf(d, exec_block("./say.sh"), 'data { rule "d" => call ex }\n')
    for answer in cases:
        write(os.path.join(d, "answer"), answer)
        report, stderr = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True and r["verdict"] == "tempfail", (answer, r, stderr)
        assert report["modifications"] == [], (answer, report["modifications"])
    # CR or NUL inside an answer line, written raw by Python
    script(d, "raw.py", f"""#!{PY}
import os, sys


sys.stdout.buffer.write(open(os.path.join(os.path.dirname(sys.argv[0]), "raw"), "rb").read())
""")
    make_conf(d, exec_block("./raw.py"), 'data { rule "d" => call ex }\n')
    for raw in (b"text=a\rX-Injected: 1\n", b"add_header=X-A: v\x00X-Injected: 1\n",
                b"verdict=reject\x00\n"):
        with open(os.path.join(d, "raw"), "wb") as f:
            f.write(raw)
        report, _ = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True, (raw, r)
        assert "Injected" not in json.dumps(report["modifications"]), report
    # ... while the same bytes on a line that is no answer are just output
    with open(os.path.join(d, "raw"), "wb") as f:
        f.write(b"hello\x00world\rstill output\nverdict=accept\r\n")
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is False and r["verdict"] == "accept", r
    assert "\ufffd" in r["fields"]["stdout"], r


# ---- hostile values ---------------------------------------------------------------

def test_hostile_envelope_values_are_only_data():
    d = tmpdir()
    canary = os.path.join(d, "pwned")
    sender = f"x$(touch {canary})`touch {canary}`;touch {canary}@example.com"
    helo = f"h;touch {canary};$(touch {canary})"
    script(d, "dump.sh", """#!/bin/sh
out="$(dirname "$0")/env-$VPS_STAGE"
printf '%s' "$VPS_FROM" > "$out.from"
printf '%s' "$VPS_HELO" > "$out.helo"
printf '%s' "$VPS_RCPTS" > "$out.rcpts"
echo "add_header=X-From: $VPS_FROM"
echo "text=$VPS_HELO"
""")
    make_conf(d, exec_block("./dump.sh", extra="on_error = continue"),
              'data { rule "d" => call ex }\n')
    rcpt = "bob;reboot@example.org"
    report, _ = vpsctl_run(d, "--from", sender, "--rcpt", rcpt, "--helo", helo)
    assert not os.path.exists(canary), "a value was run by a shell"
    assert open(os.path.join(d, "env-data.from")).read() == sender
    assert open(os.path.join(d, "env-data.helo")).read() == helo
    assert open(os.path.join(d, "env-data.rcpts")).read() == rcpt
    (r,) = results(report, "data")
    assert r["error"] is False and r["text"] == helo, r
    assert ("add_header", "X-From", sender) in mods(report), mods(report)
    # CR/LF in the sender: the script sees it verbatim; nothing of it reaches a header
    # or the reply as a second line
    evil = "a\r\nX-Injected: 1@example.com"
    report, _ = vpsctl_run(d, "--from", evil, "--rcpt", "bob@example.org",
                           "--helo", "h\r\n250 fake")
    assert open(os.path.join(d, "env-data.from"), newline="").read() == evil
    for m in report["modifications"]:
        assert "\r" not in (m.get("value") or "") and "\n" not in (m.get("value") or ""), m
        assert m.get("name") != "X-Injected", m
    for s in report["stages"]:
        assert "\n" not in (s.get("text") or "") and "\r" not in (s.get("text") or ""), s
        assert "fake" not in json.dumps(s.get("text")), s


# ---- processes ---------------------------------------------------------------------

def proc_gone(pid):
    """Absent, or a zombie waiting for an init that does not reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_timeout_kills_the_process_group():
    d = tmpdir()
    pids = os.path.join(d, "pids")
    script(d, "hang.sh", f"""#!/bin/sh
echo $$ >> {pids}
sleep 300 &
echo $! >> {pids}
( sleep 300 ; echo never ) &
echo $! >> {pids}
{PY} -c 'import os, time; open("{pids}", "a").write("%d\\n" % os.getpid()); time.sleep(300)' &
sleep 300
""")
    make_conf(d, exec_block("./hang.sh", timeout="700ms", extra="on_error = reject"),
              'data { rule "d" => call ex }\n')
    t0 = time.time()
    report, stderr = vpsctl_run(d)
    took = time.time() - t0
    (r,) = results(report, "data")
    assert r["error"] is True and r["verdict"] == "reject", r
    assert took < 3, took
    listed = [int(x) for x in open(pids).read().split()]
    assert len(listed) >= 4, listed
    deadline = time.time() + 5
    while not all(proc_gone(p) for p in listed):
        assert time.time() < deadline, [p for p in listed if not proc_gone(p)]
        time.sleep(0.05)


def test_output_floods_are_bounded():
    d = tmpdir()
    for name, body in (("out.sh", "#!/bin/sh\necho $$ > \"$(dirname \"$0\")/pid\"\nexec yes flood\n"),
                       ("err.sh", "#!/bin/sh\necho $$ > \"$(dirname \"$0\")/pid\"\nexec yes flood >&2\n")):
        script(d, name, body)
        make_conf(d, exec_block(f"./{name}", timeout="20s", extra="max_output = 100K"),
                  'data { rule "d" => call ex }\n')
        t0 = time.time()
        report, stderr = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True and r["verdict"] == "tempfail", r
        assert "max_output" in stderr, stderr
        assert time.time() - t0 < 5  # killed at the limit, not at the timeout
        pid = int(open(os.path.join(d, "pid")).read())
        deadline = time.time() + 5
        while not proc_gone(pid):
            assert time.time() < deadline, pid
            time.sleep(0.05)
    # just under the limit is fine
    script(d, "big.sh", "#!/bin/sh\nhead -c 90000 /dev/zero | tr '\\0' x\necho\necho verdict=accept\n")
    make_conf(d, exec_block("./big.sh", extra="max_output = 100K"), 'data { rule "d" => call ex }\n')
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is False and r["verdict"] == "accept" and len(r["fields"]["stdout"]) > 90000


def test_runs_as_another_user():
    d = tmpdir()
    os.chmod(d, 0o755)
    script(d, "who.sh", '#!/bin/sh\necho "set uid=$(id -u)"\necho "set gid=$(id -g)"\n'
                        'echo "set groups=$(id -G | tr " " ,)"\n')
    make_conf(d, exec_block("./who.sh", extra="user = nobody\ngroup = nogroup"),
              'data { rule "d" => call ex }\n')
    report, stderr = vpsctl_run(d)
    (r,) = results(report, "data")
    if os.geteuid() == 0:
        import grp, pwd
        assert r["error"] is False, (r, stderr)
        assert r["fields"]["uid"] == pwd.getpwnam("nobody").pw_uid, r
        assert r["fields"]["gid"] == grp.getgrnam("nogroup").gr_gid, r
        assert "0" not in str(r["fields"]["groups"]).split(","), r  # root's groups dropped
    else:
        assert r["error"] is True and "root" in stderr, (r, stderr)


def test_config_errors():
    d = tmpdir()
    script(d, "ok.sh", "#!/bin/sh\n")
    write(os.path.join(d, "notexec.sh"), "#!/bin/sh\n")
    cases = [
        ("type = exec\n", "command"),
        ("type = exec\ncommand = ./nosuch.sh\n", "command"),
        ("type = exec\ncommand = ./notexec.sh\n", "command"),
        ("type = exec\ncommand = ./ok.sh 'unterminated\n", "command"),
        ("type = exec\ncommand = ./ok.sh\nexit_1 = maybe\n", "exit_1"),
        ("type = exec\ncommand = ./ok.sh\nexit_256 = reject\n", "exit_256"),
        ("type = exec\ncommand = ./ok.sh\nexit_other = sometimes\n", "exit_other"),
        ("type = exec\ncommand = ./ok.sh\nuser = no-such-user-here\n", "user"),
        ("type = exec\ncommand = ./ok.sh\ngroup = nogroup\n", "group"),
        ("type = exec\ncommand = ./ok.sh\nmax_output = 0\n", "max_output"),
        ("type = exec\ncommand = ./ok.sh\nshell = yes\n", "shell"),
    ]
    for block, word in cases:
        conf = make_conf(d, "[connector ex]\n" + block, 'data { rule "d" => call ex }\n')
        p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1 and word in p.stderr and "ex" in p.stderr, (block, p.stderr)
    conf = make_conf(d, "[connector ex]\ntype = exec\ncommand = ./ok.sh\nexit_255 = reject\n",
                     'data { rule "d" when ex.anything == "x" => reject }\n')
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr  # `set` fields are the script's own: any name


def test_path_lookup_and_quoted_arguments():
    d = tmpdir()
    make_conf(d, exec_block("""printf 'set a=%s\\nset b=%s\\n' "two words" 'it''s'"""),
              'data { rule "d" => call ex }\n')
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is False and r["fields"]["a"] == "two words", r
    assert r["fields"]["b"] == "its", r


# ---- many sessions: the concurrency limit ---------------------------------------------

def test_concurrency_limit_with_concurrent_sessions():
    d = tmpdir()
    log_path = os.path.join(d, "spans")
    script(d, "slow.sh", f"""#!/bin/sh
echo "start $(date +%s.%N)" >> {log_path}
sleep 0.3
echo "end $(date +%s.%N)" >> {log_path}
case "$VPS_CLIENT_IP" in *.66) echo verdict=reject ;; esac
""")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = make_conf(d, exec_block("./slow.sh", timeout="30s", extra="concurrency = 2"),
                     'connect { rule "c" => call ex }\n',
                     extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    vlog = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", conf], stdout=open(vlog, "w"), stderr=subprocess.STDOUT)
    taplib._procs.append(proc)
    deadline = time.time() + 15
    while "milter: listening on" not in open(vlog).read():
        assert proc.poll() is None and time.time() < deadline, open(vlog).read()
        time.sleep(0.05)
    out = {}

    def one(i):
        out[i] = milter_connect_verdict(port, f"192.0.2.{66 if i % 3 == 0 else i + 1}")[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 6, out
    for i, cmd in out.items():
        assert cmd in ((b"r", b"y") if i % 3 == 0 else (b"c",)), (i, cmd)
    events = sorted((float(t), kind) for kind, t in
                    (line.split() for line in open(log_path).read().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2 and len(events) == 12, (peak, events)
    proc.terminate()
    assert proc.wait(timeout=20) == 0, open(vlog).read()[-3000:]
    assert "Sanitizer" not in open(vlog).read(), open(vlog).read()[-3000:]


# ---- the documented example ---------------------------------------------------------

def docs_block(lang, section="## `exec`"):
    text = open(os.path.join(SRC, "docs", "connectors.md")).read()
    part = text[text.index(section):]
    nxt = part.find("\n## ", 1)
    part = part if nxt < 0 else part[:nxt]
    m = re.search(r"```" + lang + r"\n(.*?)```", part, re.S)
    assert m, f"no {lang} block in {section}"
    return m.group(1)


def test_documented_example():
    d = tmpdir()
    os.chmod(d, 0o755)
    path = script(d, "check.sh", docs_block("sh"))
    block = docs_block("ini").replace("/usr/local/lib/vps/check.sh", path)
    if os.geteuid() != 0:
        block = block.replace("user = nobody\n", "")
    make_conf(d, block, docs_block("vsl"))
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert (s["verdict"], s["code"], s["text"]) == ("reject", 550, "No lotteries here"), s
    write(os.path.join(d, "m.eml"), MESSAGE.replace("lottery winner", "hello"))
    report, _ = vpsctl_run(d)
    assert ("add_header", "X-Checked", "yes") in mods(report), mods(report)


if __name__ == "__main__":
    run([
        test_shell_script_verdict_reply_headers_and_fields,
        test_rules_read_fields_and_python_script_reads_stdin_and_environment,
        test_exit_status_mapping,
        test_non_zero_exit_without_mapping_is_an_error_even_with_a_verdict,
        test_refused_answers_give_on_error,
        test_hostile_envelope_values_are_only_data,
        test_timeout_kills_the_process_group,
        test_output_floods_are_bounded,
        test_runs_as_another_user,
        test_config_errors,
        test_path_lookup_and_quoted_arguments,
        test_concurrency_limit_with_concurrent_sessions,
        test_documented_example,
    ])
