#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""docs/vsmtpd.md says what is true: every ```ini block is a complete
configuration fragment that `vsmtpd --check` accepts (with the files it
names made in a temporary directory); every ```vsl block loads with the
complete example configuration; the password file example works for AUTH;
every [vsmtpd], [queue] and [delivery] key of vps/config-schema.c is
documented, and the defaults in the document's tables are the schema's."""
import base64, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir
from vsmtpdlib import Vsmtpd, VSMTPD, make_cert

SRC = os.environ["VPS_SRCDIR"]
DOC = os.path.join(SRC, "docs", "vsmtpd.md")
SCHEMA = os.path.join(SRC, "vps", "config-schema.c")
# The examples live in /etc/vps/vps.conf and name spool directories under
# /var/spool/vps: both are moved into the test's directory.
PREFIXES = ("/etc/vps/", "/var/spool/vps/")
PASSWORDS = {"alice": "correct horse", "bob@example.org": "battery staple"}


def blocks(lang):
    return taplib.doc_blocks(DOC, lang)


def passwd_example():
    (block,) = [b for b in blocks("text") if b.startswith("# /etc/vps/passwd")]
    return block


def parse_ini(text):
    """[(group, key, value)] of a config fragment."""
    out, group = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^\[(.+)\]$", s)
        if m:
            group = m.group(1)
            continue
        k, sep, val = s.partition("=")
        assert sep and group, f"not a config line: {line!r}"
        out.append((group, k.strip(), val.strip()))
    return out


def localize(text, d):
    for p in PREFIXES:
        text = text.replace(p, os.path.join(d, p.strip("/").replace("/", "_")) + "/")
    return text


def materialize(text, d, rules="", passwd=None):
    """Write vps.conf (the fragment, paths moved into d), rules.vsl, the
    certificates and keys, and the password file it names."""
    conf = localize(text, d)
    entries = parse_ini(conf)

    def path(p):
        return p if p.startswith("/") else os.path.join(d, p)

    pairs = []
    vals = {(g, k): v for g, k, v in entries}
    for (g, k), val in vals.items():
        if k.endswith("tls_cert") or (g == "tls" and k == "cert"):
            keyname = k[:-4] + "key" if k.endswith("cert") else "key"
            assert (g, keyname) in vals, f"{k} without {keyname}"
            pairs.append((val, vals[(g, keyname)]))
        if k == "tls_sni":
            for pair in val.split(","):
                c, _, kk = pair.strip().partition(":")
                pairs.append((c, kk))
        if k == "passwd_file":
            os.makedirs(os.path.dirname(path(val)), exist_ok=True)
            with open(path(val), "w") as f:
                f.write(passwd if passwd is not None else passwd_example())
            os.chmod(path(val), 0o600)
    for i, (c, k) in enumerate(pairs):
        name = os.path.basename(c).split(".pem")[0] or f"cert{i}"
        cert, key = make_cert(tmpdir(), name, name=f"c{i}")
        for src, dst in ((cert, path(c)), (key, path(k))):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(src, "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
    rules_name = vals.get(("vpsd", "rules"), "rules.vsl")
    with open(path(rules_name), "w") as f:
        f.write(rules)
    conf_path = os.path.join(d, "vps.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    return conf_path


def check(conf_path):
    p = subprocess.run([VSMTPD, "-c", conf_path, "--check"], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(conf_path))
    return p.returncode, p.stdout + p.stderr


def test_every_ini_block_checks():
    ini = blocks("ini")
    assert len(ini) >= 8, f"docs/vsmtpd.md: only {len(ini)} ```ini blocks"
    for i, text in enumerate(ini):
        d = tmpdir()
        conf = materialize(text, d)
        rc, out = check(conf)
        assert rc == 0, f"```ini block {i + 1}:\n{text}\nvsmtpd --check exited {rc}:\n{out}"


def with_test_listeners(conf):
    """The fragment with every listener moved to 127.0.0.1 and a port of the
    harness ({port}, {submission_port}, {submissions_port}); a fragment
    without listen gets one (the default, 127.0.0.1:2525, may be taken)."""
    ports = {"listen": "{port}", "listen_submission": "{submission_port}",
             "listen_submissions": "{submissions_port}"}
    out, group, has_listen = [], None, False
    for line in conf.splitlines():
        m = re.match(r"^\s*\[(.+)\]\s*$", line)
        if m:
            group = m.group(1)
            out.append(line)
            if group == "vsmtpd":
                out.append("listen = 127.0.0.1:{port}")
                has_listen = True
            continue
        k = line.partition("=")[0].strip()
        if group == "vsmtpd" and k == "listen":
            continue
        if group == "vsmtpd" and k in ports:
            line = f"{k} = 127.0.0.1:{ports[k]}"
        out.append(line)
    if not has_listen:
        out += ["[vsmtpd]", "listen = 127.0.0.1:{port}"]
    return "\n".join(out) + "\n"


def test_every_ini_block_starts():
    """--check is not enough: each fragment must also start (certificates,
    password file, networks are only read then) and stop cleanly."""
    for i, text in enumerate(blocks("ini")):
        d = tmpdir()
        materialize(text, d)
        conf = with_test_listeners(localize(text, d))
        v = Vsmtpd(conf=conf, dir=d)
        try:
            v.start()
        except AssertionError as e:
            raise AssertionError(f"```ini block {i + 1}:\n{text}\ndoes not start: {e}")
        with v.smtp() as c:
            assert c.greeting.code == 220, (i + 1, c.greeting)
        assert v.stop() == 0, (i + 1, v.log()[-2000:])


def test_check_refuses_what_start_refuses():
    """vsmtpd --check must find the errors a start finds: files that do not
    exist, a bad network list, implicit TLS without a certificate."""
    cases = [
        ("tls_cert = nope.pem\ntls_key = nope.key", "tls_cert"),
        ("passwd_file = nopasswd", "passwd_file"),
        ("limit_exceptions = garbage", "limit_exceptions"),
        ("listen_submissions = 127.0.0.1:4650", "listen_submissions"),
    ]
    missed = []
    for body, key in cases:
        d = tmpdir()
        # written as is: materialize() would make the files it names
        conf = os.path.join(d, "vps.conf")
        with open(conf, "w") as f:
            f.write(f"[vsmtpd]\nlisten = 127.0.0.1:2525\n{body}\n")
        open(os.path.join(d, "rules.vsl"), "w").close()
        rc, out = check(conf)
        if rc != 1 or key not in out:
            missed.append((body, rc, out.splitlines()[:1]))
    assert not missed, f"vsmtpd --check accepts what vsmtpd refuses at start: {missed}"


def test_limit_exceptions_may_be_empty():
    """The document (and the spec) say: set limit_exceptions empty to apply
    the per-IP limits to every client, 127.0.0.1 included."""
    d = tmpdir()
    conf = materialize("[vsmtpd]\nlisten = 127.0.0.1:2525\nlimit_exceptions =\n"
                       "max_connections_per_ip = 3\n", d)
    rc, out = check(conf)
    assert rc == 0, (rc, out)


def test_every_vsl_block_loads():
    vsl = blocks("vsl")
    assert len(vsl) >= 4, f"docs/vsmtpd.md: only {len(vsl)} ```vsl blocks"
    (full,) = [b for b in blocks("ini") if "[export]" in b and "[quarantine]" in b]
    for i, rules in enumerate(vsl):
        d = tmpdir()
        conf = materialize(full, d, rules=rules)
        rc, out = check(conf)
        assert rc == 0, f"```vsl block {i + 1}:\n{rules}\nvsmtpd --check exited {rc}:\n{out}"


def test_a_broken_fragment_fails_the_check():
    """The check above can fail: a misspelt key is refused."""
    d = tmpdir()
    conf = materialize("[vsmtpd]\nlisten = 127.0.0.1:2525\nmax_conections = 5\n", d)
    rc, out = check(conf)
    assert rc == 1 and "max_conections" in out, (rc, out)


def test_passwd_example_authenticates():
    block = passwd_example()
    for user, pw in PASSWORDS.items():
        assert f'"{pw}"' in block.splitlines()[0] and f"\n{user}:" in block, (user, block)
    v = Vsmtpd(settings={"vsmtpd": {"passwd_file": "passwd", "auth_over_plaintext": "true",
                                    "auth_failure_delay": "0s"}})
    with open(os.path.join(v.dir, "passwd"), "w") as f:
        f.write(block)
    os.chmod(os.path.join(v.dir, "passwd"), 0o600)
    v.start()
    for user, pw in PASSWORDS.items():
        with v.smtp() as c:
            c.ehlo("client.test")
            token = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
            r = c.cmd(f"AUTH PLAIN {token}")
            assert (r.code, r.text) == (235, "2.7.0 Authentication successful"), (user, r)
        with v.smtp() as c:
            c.ehlo("client.test")
            token = base64.b64encode(f"\0{user}\0{pw}x".encode()).decode()
            r = c.cmd(f"AUTH PLAIN {token}")
            assert r.code == 535, (user, r)
    v.stop()


def schema_keys():
    """{(group, key): default or None} of the vsmtpd-related groups."""
    text = open(SCHEMA, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r'\{\s*"(vsmtpd|queue|delivery|limits)",\s*"(\w+)",\s*VPS_CFG_\w+,\s*'
                         r'(NULL|"([^"]*)")', text):
        out[(m.group(1), m.group(2))] = m.group(4)
    assert len(out) > 30, out
    return out


def test_every_key_documented():
    doc = open(DOC, encoding="utf-8").read()
    missing = [f"[{g}] {k}" for (g, k) in schema_keys()
               if g != "limits" and f"`{k}`" not in doc and f"`[{g}] {k}`" not in doc]
    assert not missing, f"docs/vsmtpd.md does not document: {missing}"


def test_documented_defaults_are_the_schema_defaults():
    keys = schema_keys()
    checked = 0
    for line in open(DOC, encoding="utf-8"):
        m = re.match(r"^\| `(?:\[(\w+)\] )?(\w+)` \| (`[^`|]*`|—) \|", line)
        if not m:
            continue
        group, key, cell = m.group(1), m.group(2), m.group(3)
        groups = [group] if group else ["vsmtpd", "queue", "delivery"]
        found = [(g, key) for g in groups if (g, key) in keys]
        if not found:
            continue
        default = keys[found[0]]
        doc_default = None if cell == "—" else cell.strip("`")
        assert doc_default == default, f"docs/vsmtpd.md: {line.strip()} -- the schema says {default!r}"
        checked += 1
    assert checked >= 25, f"only {checked} table rows with a default found"


if __name__ == "__main__":
    run([test_every_ini_block_checks, test_every_ini_block_starts, test_check_refuses_what_start_refuses,
         test_limit_exceptions_may_be_empty,
         test_every_vsl_block_loads, test_a_broken_fragment_fails_the_check,
         test_passwd_example_authenticates, test_every_key_documented,
         test_documented_defaults_are_the_schema_defaults])
