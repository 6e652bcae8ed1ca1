#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd and vpsctl as a user runs them: start, --check, reload, drain,
and the offline commands (check-rules, explain, run, quarantine)."""
import json, os, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, spawn, tmpdir, wait_for_line

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]
DATA = os.path.join(SRC, "tests", "data")

GOOD_RULES = """
list trusted = [127.0.0.0/8]
connect { rule "trusted" when client.ip in trusted => accept }
data { rule "spam" when subject =~ /viagra/i => reject 550 5.7.1 "Spam" }
"""

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def make_conf(d, rules=GOOD_RULES, extra=""):
    write(os.path.join(d, "rules.vsl"), rules)
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 2s
[log]
target = stderr
level = info
[quarantine]
dir = q
names = virus, spam
{extra}
""")
    return os.path.join(d, "vps.conf")

def ctl(*args, check=True):
    p = subprocess.run([VPSCTL, *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"vpsctl {args} exited {p.returncode}: {p.stderr}")
    return p

def test_check_ok():
    d = tmpdir()
    conf = make_conf(d)
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "OK" in p.stdout

def test_check_bad_rules_names_file_line_col():
    d = tmpdir()
    conf = make_conf(d, rules='connect {\n  rule "x" when helo.name == "a" => accept\n}\n')
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "rules.vsl:2:" in p.stderr, p.stderr

def test_check_bad_config_names_file_line_key():
    d = tmpdir()
    conf = make_conf(d)
    write(conf, open(conf).read().replace("workers = 2", "workers = lots"))
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "vps.conf:" in p.stderr and "workers" in p.stderr, p.stderr

def test_unknown_connector_type_refused():
    d = tmpdir()
    conf = make_conf(d, extra="[connector foo]\ntype = nosuchtype\n")
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "nosuchtype" in p.stderr, p.stderr

def test_start_reload_refuse_reload_accept_drain():
    d = tmpdir()
    conf = make_conf(d)
    p = spawn([VPSD, "-c", conf], bufsize=0)
    wait_for_line(p, "ready")
    # A broken rule file is refused; the old program stays.
    write(os.path.join(d, "rules.vsl"), 'data { rule "x" when => accept }\n')
    p.send_signal(signal.SIGHUP)
    lines = wait_for_line(p, "reload refused")
    assert any("rules.vsl:1:" in l for l in lines), lines
    # A good one is taken: generation 2.
    write(os.path.join(d, "rules.vsl"), GOOD_RULES + 'rcpt { rule "r" => continue }\n')
    p.send_signal(signal.SIGHUP)
    lines = wait_for_line(p, "reloaded")
    assert any("generation=2" in l and "rcpt=1" in l for l in lines), lines
    p.send_signal(signal.SIGTERM)
    wait_for_line(p, "stopped")
    assert p.wait(timeout=10) == 0

def test_ctl_check_rules():
    d = tmpdir()
    conf = make_conf(d)
    p = ctl("-c", conf, "check-rules", os.path.join(d, "rules.vsl"))
    assert "OK, 2 rules" in p.stdout, p.stdout
    bad = os.path.join(d, "bad.vsl")
    write(bad, "connect {\n  rule \"x\" when client.ip in nosuchlist => accept\n}\n")
    p = ctl("-c", conf, "check-rules", bad, check=False)
    assert p.returncode == 1
    assert p.stderr.startswith(bad + ":2:"), p.stderr
    assert "nosuchlist" in p.stderr

def test_ctl_explain():
    d = tmpdir()
    conf = make_conf(d)
    p = ctl("-c", conf, "explain", os.path.join(d, "rules.vsl"))
    assert "spam" in p.stdout and "data" in p.stdout, p.stdout

def test_ctl_run_text_and_json():
    d = tmpdir()
    conf = make_conf(d)
    p = ctl("-c", conf, "run", os.path.join(DATA, "spam.eml"), "--client-ip", "192.0.2.1",
            "--rcpt", "bob@example.org", "--json")
    r = json.loads(p.stdout)
    assert r["verdict"] == "reject" and r["code"] == 550 and r["stage"] == "data", r
    assert r["enhanced"] == "5.7.1" and r["text"] == "Spam", r
    p = ctl("-c", conf, "run", os.path.join(DATA, "simple.eml"), "--client-ip", "192.0.2.1")
    assert "result: accept" in p.stdout, p.stdout

def test_ctl_usage_errors():
    p = ctl("frobnicate", check=False)
    assert p.returncode == 2
    p = ctl("run", check=False)
    assert p.returncode == 2

def test_ctl_quarantine_cycle():
    d = tmpdir()
    conf = make_conf(d, rules='data { rule "q" when subject =~ /viagra/i => quarantine "spam" }\n')
    p = ctl("-c", conf, "run", os.path.join(DATA, "spam.eml"), "--client-ip", "192.0.2.1",
            "--apply", "--json")
    r = json.loads(p.stdout)
    assert r["verdict"] == "quarantine" and r["quarantine"] == "spam", r
    p = ctl("-c", conf, "quarantine", "list", "--json")
    entries = json.loads(p.stdout)
    assert len(entries) == 1 and entries[0]["name"] == "spam", entries
    qid = entries[0]["id"]
    # RAW is the message byte for byte; JSON carries the envelope.
    raw = subprocess.run([VPSCTL, "-c", conf, "quarantine", "show", qid, "--format", "raw"],
                         capture_output=True, timeout=30).stdout
    assert raw == open(os.path.join(DATA, "spam.eml"), "rb").read()
    meta = json.loads(ctl("-c", conf, "quarantine", "show", qid, "--format", "json").stdout)
    assert "bob@example.org" in json.dumps(meta), meta
    qdir = os.path.join(d, "q", "spam")
    for f in os.listdir(qdir):
        assert os.stat(os.path.join(qdir, f)).st_mode & 0o777 == 0o600, f
    ctl("-c", conf, "quarantine", "delete", qid)
    assert json.loads(ctl("-c", conf, "quarantine", "list", "--json").stdout) == []
    p = ctl("-c", conf, "quarantine", "show", "../../etc/passwd", check=False)
    assert p.returncode == 1

def blocks(path, lang):
    return taplib.doc_blocks(path, lang)

def test_shipped_config_and_rules_check():
    conf = os.path.join(SRC, "conf", "vps.conf")
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr

def test_docs_config_example_is_the_shipped_config():
    ini = blocks(os.path.join(SRC, "docs", "config.md"), "ini")
    assert ini, "docs/config.md has no ```ini block"
    shipped = open(os.path.join(SRC, "conf", "vps.conf")).read()
    assert ini[-1] == shipped, "docs/config.md's complete example differs from conf/vps.conf"

def test_docs_connectors_examples_load():
    doc = os.path.join(SRC, "docs", "connectors.md")
    ini, vsl = blocks(doc, "ini"), blocks(doc, "vsl")
    assert ini and vsl
    d = tmpdir()
    write(os.path.join(d, "rules.vsl"), vsl[0])
    write(os.path.join(d, "vps.conf"), "[vpsd]\nrules = rules.vsl\n[quarantine]\ndir = q\nnames = virus\n" + ini[0])
    p = subprocess.run([VPSD, "-c", os.path.join(d, "vps.conf"), "--check"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    # And they behave as the document says: EICAR is a virus.
    r = json.loads(ctl("-c", os.path.join(d, "vps.conf"), "run", os.path.join(DATA, "eicar-plain.eml"),
                       "--client-ip", "192.0.2.1", "--rcpt", "bob@example.org", "--json").stdout)
    assert r["verdict"] == "quarantine" and r["quarantine"] == "virus", r

def test_readme_rules_load():
    vsl = blocks(os.path.join(SRC, "README.md"), "vsl")
    assert vsl
    d = tmpdir()
    for i, text in enumerate(vsl):
        path = os.path.join(d, f"readme{i}.vsl")
        write(path, text)
        ctl("check-rules", path)

run([test_shipped_config_and_rules_check, test_docs_config_example_is_the_shipped_config,
     test_docs_connectors_examples_load, test_readme_rules_load, test_check_ok, test_check_bad_rules_names_file_line_col,
     test_check_bad_config_names_file_line_key, test_unknown_connector_type_refused,
     test_start_reload_refuse_reload_accept_drain, test_ctl_check_rules, test_ctl_explain,
     test_ctl_run_text_and_json, test_ctl_usage_errors, test_ctl_quarantine_cycle])
