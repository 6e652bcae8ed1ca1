#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile SMTP input against vsmtpd (TESTING.md, "SMTP (vsmtpd)", every
item that is not TLS): smuggling sequences, bare LF/CR both policies,
dot-stuffing, talking before the greeting, over-long commands and lines,
address length limits, SIZE and real overflow, too many recipients, huge
headers, NUL, CR/LF in xtext, shell metacharacters and path traversal in
local parts, max_errors, tarpit, slowloris, connection floods.  Each case
checks what the client sees, what is queued/delivered (counted, and the
content), and that the server goes on serving."""
import os, re, signal, socket, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run
from vsmtpdlib import (expect, HOSTNAME, SmtpClosed, Vsmtpd, dot_stuff, qid_log, queue_id,
                       strip_trace)

_servers = {}


def server(kind="maildir"):
    """Shared servers (a test with special limits starts its own)."""
    if kind not in _servers:
        settings = {
            "maildir": {},
            "normalize": {"vsmtpd": {"bare_newline": "normalize"}},
            "normalize-keep": {"vsmtpd": {"bare_newline": "normalize"},
                               "delivery": {"default": "relay:[127.0.0.1]:1"}},
            "keep": {"delivery": {"default": "relay:[127.0.0.1]:1"}},
        }[kind]
        _servers[kind] = Vsmtpd(settings=settings).start()
    return _servers[kind]


def open_data(v, rcpt, sender="a@example.net", **kw):
    """A session that is inside DATA (after the 354)."""
    c = v.smtp(**kw)
    c.ehlo()
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250)
    expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
    expect(c.cmd("DATA"), 354)
    return c


def still_serves(v):
    """A new session gets a normal greeting and NOOP works."""
    with v.smtp() as c:
        expect(c.greeting, 220)
        expect(c.cmd("NOOP"), 250)


def greets_again(v, timeout=10):
    """A new session is greeted with 220 once the server has seen a freed
    slot: a close reaches it after a scheduling delay on a loaded machine,
    so this polls instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        with v.smtp(greeting=False) as c:
            r = c.reply()
            if r.code == 220 or time.monotonic() > deadline:
                expect(r, 220)
                return
        time.sleep(0.1)


def spool_empty(v):
    """Nothing in the spool: tmp/ and incoming/ hold no file."""
    left = v.queue_files("tmp") + v.queue_files("incoming")
    assert not left, f"files left in the spool: {left}"


def domain_of_length(n):
    """A syntactically valid domain of exactly n octets (labels <= 63)."""
    labels, left = [], n - len(".test")
    while left > 0:
        size = min(63, left)
        if left - size == 1:  # never leave 1 octet: it would be an empty label
            size -= 1
        labels.append("d" * size)
        left -= size + 1
    d = ".".join(labels) + ".test"
    assert len(d) == n, (len(d), n)
    return d

# ---------------------------------------------------------------- smuggling


SMUGGLE = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r\r\n"]


def smuggled_message(i, seq):
    return (b"Subject: smuggle %d\r\n\r\nbefore" % i + seq
            + b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


def test_smuggling_sequences_normalize():
    """bare_newline = normalize: the bytes are accepted, but none of the
    sequences ends the message: one 250 per real end, one message, the
    smuggled commands are part of its body, nothing for the victim."""
    v = server("normalize")
    rcpt = "smuggle-n@example.org"
    queued_before = len(re.findall(r"queued from=", v.log()))
    for i, seq in enumerate(SMUGGLE):
        c = open_data(v, rcpt)
        c.send(smuggled_message(i, seq) + b".\r\n")
        r = c.reply()
        qid = queue_id(r)
        extra = c.read_available(0.3)
        assert not extra, f"{seq!r}: more replies after the end of data: {extra!r}"
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("QUIT"), 221)
        c.close()
        got = v.wait_maildir(rcpt, i + 1)
        assert len(got) == i + 1, f"{seq!r}: {len(got)} messages for {i + 1} sent"
        mine = [m for m in got if b"Subject: smuggle %d\n" % i in m]
        assert len(mine) == 1, f"{seq!r}: {len(mine)} delivered copies: {got}"
        body = mine[0]
        assert b"MAIL FROM:<evil@example.net>" in body and b"smuggled body" in body, \
            f"{seq!r}: smuggled part not inside the message: {body!r}"
        v.wait_log(qid_log(qid) + r"queued .*nrcpt=1")
    time.sleep(0.3)
    assert len(v.maildir_messages(rcpt)) == len(SMUGGLE)
    assert not os.path.exists(v.maildir("victim@example.org")), "a smuggled message was delivered"
    queued = [l for l in v.log().splitlines() if "queued from=" in l][queued_before:]
    assert len(queued) == len(SMUGGLE), f"{len(queued)} messages queued for {len(SMUGGLE)}: {queued}"
    assert not any("evil@example.net" in l for l in queued), queued


def test_smuggling_sequences_reject():
    """bare_newline = reject (the default): each sequence → 521 and close,
    nothing queued or delivered."""
    v = server()
    rcpt = "smuggle-r@example.org"
    for i, seq in enumerate(SMUGGLE):
        c = open_data(v, rcpt)
        c.send(smuggled_message(i, seq) + b".\r\n")
        r = c.reply()
        assert r.code == 521 and r.enhanced == "5.5.2", f"{seq!r}: {r}"
        assert re.match(rf"5\.5\.2 {re.escape(HOSTNAME)} Error: bare <(LF|CR)> received$", r.text), r
        assert c.closed(5), f"{seq!r}: not closed after 521"
        c.close()
    time.sleep(0.5)
    assert not v.maildir_messages(rcpt) and not os.path.exists(v.maildir("victim@example.org"))
    spool_empty(v)
    still_serves(v)


def test_bare_lf_in_command():
    v = server()
    with v.smtp() as c:
        c.send(b"EHLO client.test\n")
        r = c.reply()
        expect(r, 521, f"5.5.2 {HOSTNAME} Error: bare <LF> received")
        assert c.closed(5)
    with v.smtp() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<a@example.net>\n")
        expect(c.reply(), 521, enhanced="5.5.2")
        assert c.closed(5)
    # normalize: an LF-terminated command is a command
    with server("normalize").smtp() as c:
        c.send(b"EHLO client.test\n")
        expect(c.reply(), 250)
        c.send(b"NOOP\n")
        expect(c.reply(), 250, "2.0.0 Ok")


def test_bare_lf_normalize_stored_with_crlf():
    v = server("normalize-keep")
    c = open_data(v, "norm@example.org")
    c.send(b"Subject: lf\n\nline one\nline two\r\nline three\rline four\r\n.\r\n")
    qid = queue_id(c.reply())
    c.close()
    v.wait_queued(qid)
    data = v.queued_message(qid)
    assert re.search(rb"(?<!\r)\n", data) is None, f"bare LF in the queue file: {data!r}"
    assert re.search(rb"\r(?!\n)", data) is None, f"bare CR in the queue file: {data!r}"
    want = b"Subject: lf\r\n\r\nline one\r\nline two\r\nline three\r\nline four\r\n"
    assert data.endswith(want), data
    # the delivered copy: one message, every line there
    v2 = server("normalize")
    c = open_data(v2, "norm2@example.org")
    c.send(b"Subject: lf2\n\nalpha\n.\nbeta\r\n.\r\n")
    queue_id(c.reply())
    c.close()
    got = v2.wait_maildir("norm2@example.org")
    time.sleep(0.3)
    assert len(v2.maildir_messages("norm2@example.org")) == 1
    assert strip_trace(got[0]) == b"Subject: lf2\n\nalpha\n.\nbeta\n", got[0]


def test_dot_stuffing_round_trip():
    v = server()
    rcpt = "dots@example.org"
    body = b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n..x\r\n...\r\n .\r\n. \r\nmid.dle\r\n."
    body += b"\r\n"  # the last line of the message is a lone "."
    c = open_data(v, rcpt)
    c.send(dot_stuff(body) + b".\r\n")
    queue_id(c.reply())
    c.close()
    got = v.wait_maildir(rcpt)[0]
    assert strip_trace(got) == body.replace(b"\r\n", b"\n"), got

# ----------------------------------------------------- greeting and commands


def test_commands_before_greeting():
    """The client talks first: 554 5.5.0 and close, no command answered.
    vsmtpd is stopped (SIGSTOP) while the client connects and sends, so the
    bytes are there before it accepts: no race with the greeting."""
    v = server()
    v.proc.send_signal(signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", v.port), timeout=10)
        s.sendall(b"EHLO client.test\r\nMAIL FROM:<early@example.net>\r\n")
        time.sleep(0.2)
    finally:
        v.proc.send_signal(signal.SIGCONT)
    data, t0 = b"", time.monotonic()
    while time.monotonic() - t0 < 5:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    s.close()
    lines = [l for l in data.decode("utf-8", "replace").split("\r\n") if l]
    assert lines == ["554 5.5.0 Error: SMTP protocol synchronization"], \
        f"want only 554 5.5.0 and close, got {lines}"
    still_serves(v)


def test_long_command_lines():
    v = server()
    with v.smtp() as c:
        c.ehlo()
        # 512 octets with CRLF: allowed (RFC 5321 4.5.3.1.4)
        r = c.cmd("NOOP " + "x" * (512 - 2 - 5))
        assert r.code != 500, f"512-octet command refused: {r}"
        # 513 octets of command (515 with CRLF)
        expect(c.cmd("NOOP " + "x" * (513 - 5)), 500, "5.5.2 Error: line too long")
        expect(c.cmd("NOOP"), 250, "2.0.0 Ok")
        # MAIL and RCPT may be 1024 octets: a valid RCPT line of ~680
        expect(c.cmd("MAIL FROM:<a@example.net> ENVID=" + "e" * 60), 250)
        line = (f"RCPT TO:<{'r' * 64}@{domain_of_length(180)}> NOTIFY=SUCCESS,FAILURE,DELAY "
                f"ORCPT=rfc822;{'+2B' * 60}@{domain_of_length(200)}")
        assert 600 < len(line) + 2 < 1024
        expect(c.cmd(line), 250)
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("MAIL FROM:<a@example.net> ENVID=" + "z" * (1030 - 33)), 500,
               "5.5.2 Error: line too long")
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
        expect(c.cmd("RCPT TO:<b@example.org> ORCPT=rfc822;" + "+2B" * 340 + "@example.org"), 500,
               "5.5.2 Error: line too long")
        expect(c.cmd("NOOP"), 250)


def test_megabyte_without_lf_bounded():
    v = server()
    with v.smtp() as c:
        c.ehlo()
        c.send(b"NOOP " + b"x" * (1024 * 1024) + b"\r\n")
        expect(c.reply(timeout=20), 500, "5.5.2 Error: line too long")
        expect(c.cmd("NOOP"), 250, "2.0.0 Ok")
        # memory: 64 MB more of one line must not be held anywhere
        rss0, hwm0 = v.rss_kb(), v.hwm_kb()
        chunk = b"y" * (1024 * 1024)
        for _ in range(64):
            c.send(chunk)
        time.sleep(0.5)
        rss1 = v.rss_kb()
        c.send(b"\r\n")
        expect(c.reply(timeout=20), 500, "5.5.2 Error: line too long")
        expect(c.cmd("NOOP"), 250)
        hwm1 = v.hwm_kb()
    assert rss1 - rss0 < 16 * 1024, f"RSS grew {rss1 - rss0} KB while a 64 MB line came in"
    assert hwm1 - hwm0 < 16 * 1024, f"peak RSS grew {hwm1 - hwm0} KB for a 64 MB line"
    still_serves(v)


def test_data_line_longer_than_max_line_length():
    v = Vsmtpd(settings={"vsmtpd": {"max_line_length": "1000"}}).start()
    rcpt = "longline@example.org"
    c = open_data(v, rcpt)
    c.send(b"Subject: long\r\n\r\n" + b"x" * 1001 + b"\r\n.\r\n")
    r = c.reply()
    expect(r, 552, enhanced="5.6.0")
    spool_empty(v)
    # the session goes on; 1000 octets are fine
    expect(c.cmd("NOOP"), 250)
    r, qid = v.send_mail("a@example.net", rcpt, b"Subject: ok\r\n\r\n" + b"y" * 1000 + b"\r\n",
                         client=c)
    assert qid, r
    c.close()
    got = v.wait_maildir(rcpt)
    time.sleep(0.3)
    assert len(v.maildir_messages(rcpt)) == 1
    assert b"\n" + b"y" * 1000 + b"\n" in got[0]
    v.stop()


def test_address_length_limits():
    v = server()
    ok_path = "l" * 64 + "@" + domain_of_length(256 - 2 - 65)    # <...> exactly 256
    cases = [
        ("local part 65", "l" * 65 + "@example.org"),
        ("domain 256", "a@" + domain_of_length(256)),
        ("path 257", "l" * 64 + "@" + domain_of_length(256 - 2 - 65 + 1)),
    ]
    assert len("<" + ok_path + ">") == 256
    with v.smtp() as c:
        c.ehlo()
        for what, addr in cases:
            r = c.cmd(f"MAIL FROM:<{addr}>")
            assert r.code in (501, 553) and (r.enhanced or "").startswith("5.1."), f"MAIL {what}: {r}"
        expect(c.cmd(f"MAIL FROM:<{ok_path}>"), 250)
        for what, addr in cases:
            r = c.cmd(f"RCPT TO:<{addr}>")
            assert r.code in (501, 553) and (r.enhanced or "").startswith("5.1."), f"RCPT {what}: {r}"
        expect(c.cmd(f"RCPT TO:<{ok_path}>"), 250)
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("NOOP"), 250)

# ------------------------------------------------------------------- sizes


def test_size_parameter_and_real_overflow():
    v = Vsmtpd(settings={"limits": {"max_message_size": "10K"}}).start()
    rcpt = "big@example.org"
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<a@example.net> SIZE=10241"), 552,
               "5.3.4 Message size exceeds fixed limit")
        expect(c.cmd("MAIL FROM:<a@example.net> SIZE=10240"), 250)
        expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
        expect(c.cmd("DATA"), 354)
        # SIZE lied: 20 KB come
        c.send(b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 256 + b".\r\n")
        expect(c.reply(), 552, "5.3.4 Message size exceeds fixed limit")
        spool_empty(v)
        expect(c.cmd("NOOP"), 250)
        r, qid = v.send_mail("a@example.net", rcpt, b"Subject: small\r\n\r\nsmall\r\n", client=c)
        assert qid, r
    got = v.wait_maildir(rcpt)
    time.sleep(0.3)
    assert len(v.maildir_messages(rcpt)) == 1 and b"small" in got[0]
    assert b"zzzz" not in got[0]
    v.stop()


def test_too_many_recipients():
    v = Vsmtpd(settings={"limits": {"max_recipients": "3"}}).start()
    rcpts = [f"many{i}@example.org" for i in range(5)]
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
        for r in rcpts[:3]:
            expect(c.cmd(f"RCPT TO:<{r}>"), 250)
        for r in rcpts[3:]:
            expect(c.cmd(f"RCPT TO:<{r}>"), 452, "4.5.3 Error: too many recipients")
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        queue_id(c.reply())
    for r in rcpts[:3]:
        v.wait_maildir(r)
    time.sleep(0.3)
    for r in rcpts[3:]:
        assert not v.maildir_messages(r), f"{r} over the limit got the message"
    v.stop()


def test_huge_headers_bounded():
    """100k header lines, then one 1 MB folded header: 552, or accepted
    within the limits; memory stays bounded and the server goes on."""
    v = server()
    limit = 1024 * 1024  # [limits] max_header_size default
    for what, head in [
        ("100k short lines", b"X: v\r\n" * 100000),
        ("100k lines", b"".join(b"X-H%d: v\r\n" % i for i in range(100000))),
        ("1 MB folded", b"Subject: start\r\n" + b" folded continuation\r\n" * 55000),
    ]:
        rcpt = "headers-" + what.replace(" ", "-") + "@example.org"
        hwm0 = v.hwm_kb()
        c = open_data(v, rcpt)
        t0 = time.monotonic()
        c.send(head + b"\r\nbody\r\n.\r\n")
        r = c.reply(timeout=30)
        took = time.monotonic() - t0
        c.close()
        hwm1 = v.hwm_kb()
        assert r.code in (250, 552), f"{what}: {r}"
        assert took < 20, f"{what}: {took:.1f}s to answer"
        assert hwm1 - hwm0 < 128 * 1024, \
            f"{what}: peak RSS grew {hwm1 - hwm0} KB for {len(head)} octets"
        if r.code == 250:
            # accepted must mean within max_header_size
            assert len(head) <= limit, f"{what}: {len(head)} octets of header accepted"
            got = v.wait_maildir(rcpt)[0]
            assert strip_trace(got).endswith(b"\n\nbody\n"), what
        else:
            spool_empty(v)
        still_serves(v)

# --------------------------------------------------------------------- NUL


def test_nul_in_command():
    with server().smtp() as c:
        c.ehlo()
        c.send(b"NOOP\x00\r\n")
        expect(c.reply(), 500, enhanced="5.5.2")
        c.send(b"MAIL FROM:<a\x00b@example.net>\r\n")
        expect(c.reply(), 500, enhanced="5.5.2")
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)


def test_nul_in_body_stored_verbatim():
    v = server()
    rcpt = "nul@example.org"
    c = open_data(v, rcpt)
    c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n\x00\r\n.\r\n")
    queue_id(c.reply())
    c.close()
    got = v.wait_maildir(rcpt)[0]
    assert strip_trace(got) == b"Subject: nul\n\nbefore\x00after\n\x00\n", got

# --------------------------------------------------------- xtext injection


def test_crlf_nul_in_xtext_never_stored_or_logged():
    v = server("keep")
    bad_mail = ["ENVID=abc+0D+0AX-Injected:+20yes", "ENVID=abc+0AX-Injected:+20yes",
                "ENVID=abc+0DX-Injected:+20yes", "ENVID=abc+00X-Injected"]
    bad_rcpt = ["ORCPT=rfc822;b+0D+0AX-Injected:+20yes@example.org",
                "ORCPT=rfc822;b+0AX-Injected@example.org", "ORCPT=rfc822;b+00X-Injected@example.org"]
    with v.smtp() as c:
        c.ehlo()
        for p in bad_mail:
            r = c.cmd(f"MAIL FROM:<x@example.net> {p}")
            assert 500 <= r.code < 600, f"MAIL {p} accepted: {r}"
        expect(c.cmd("MAIL FROM:<x@example.net> ENVID=good+2Bone"), 250)
        for p in bad_rcpt:
            r = c.cmd(f"RCPT TO:<b@example.org> {p}")
            assert 500 <= r.code < 600, f"RCPT {p} accepted: {r}"
        expect(c.cmd("RCPT TO:<b@example.org> ORCPT=rfc822;b+2Bok@example.org"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: xtext\r\n\r\nx\r\n.\r\n")
        qid = queue_id(c.reply())
    env_path = os.path.join(v.queue_dir, "incoming", qid + ".json")
    v.wait_queued(qid)
    raw = open(env_path, "rb").read()
    assert b"Injected" not in raw, raw
    env = v.envelope(qid)
    assert env["envid"] == "good+one", env
    assert env["recipients"][0]["orcpt"].endswith(";b+ok@example.org"), env
    for s in (env["envid"], env["sender"], env["recipients"][0]["orcpt"]):
        assert not re.search(r"[\r\n\x00]", s), s
    log = open(v.log_path, "rb").read()
    assert not re.search(rb"(^|[\r\n])X-Injected", log), "an injected line reached the log"
    assert b"\x00" not in log and b"\r" not in log, "CR or NUL in the log"

# ------------------------------------------------------- shells and paths


def tree(root):
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def snapshot(path):
    """None when path does not exist; else what a write would change: a
    directory's tree and every file's size and mtime, a file's size and mtime."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        st = os.lstat(path)
        return (st.st_size, st.st_mtime_ns)
    out = set()
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            st = os.lstat(os.path.join(dirpath, n))
            out.add((os.path.relpath(os.path.join(dirpath, n), path), st.st_size, st.st_mtime_ns))
    return frozenset(out)


def test_shell_metacharacters_never_reach_a_shell():
    v = server()
    d = v.dir
    marker = os.path.join(d, "PWNED0")
    rcpts = ['"a;sleep 5;touch PWNED1"@example.org', '"$(touch PWNED2)"@example.org',
             '"`touch PWNED3`"@example.org', '"b|touch PWNED4"@example.org',
             '"c\\\\d$e"@example.org', f'"$(touch {marker})"@example.org']
    assert all(len(r.split("@")[0]) <= 64 for r in rcpts)
    with v.smtp() as c:
        c.ehlo()
        # A shell would sleep 5 s: 4 s tells that apart and leaves room for
        # a loaded machine (the DATA reply waits for fsyncs).
        t0 = time.monotonic()
        r = c.cmd("MAIL FROM:<;sleep 5;>")
        assert time.monotonic() - t0 < 4, f"MAIL FROM:<;sleep 5;> took {time.monotonic() - t0:.1f}s"
        assert r.code != 250 or c.cmd("RSET").code == 250, r
        expect(c.cmd('MAIL FROM:<"$(touch PWNED5);sleep 5"@example.net>'), 250)
        accepted = []
        for rc in rcpts:
            t0 = time.monotonic()
            r = c.cmd(f"RCPT TO:<{rc}>")
            assert time.monotonic() - t0 < 4, f"RCPT {rc} took {time.monotonic() - t0:.1f}s"
            if r.code == 250:
                accepted.append(rc)
        assert accepted, "every metacharacter recipient refused (valid quoted local parts)"
        expect(c.cmd("DATA"), 354)
        t0 = time.monotonic()
        c.send(b"Subject: shell\r\n\r\n$(touch PWNED6)\r\n.\r\n")
        qid = queue_id(c.reply())
        assert time.monotonic() - t0 < 4, f"DATA took {time.monotonic() - t0:.1f}s"
    # every accepted recipient is delivered (or failed) quickly, inside the root
    v.wait_log(qid_log(qid) + r"to=<.*(delivered|failed)", count=len(accepted), timeout=10)
    time.sleep(5.5)  # longer than any "sleep 5" a shell would have run
    for root in (d, "/tmp", os.getcwd()):
        found = [n for n in tree(root) if os.path.basename(n).startswith("PWNED")] if root == d else \
            [n for n in os.listdir(root) if n.startswith("PWNED")]
        assert not found, f"a shell ran: {found} in {root}"
    for p in tree(d):
        top = p.split(os.sep)[0]
        assert top in ("mail", "queue", "quarantine", "exports", "vps.conf", "rules.vsl",
                       "vsmtpd.log"), f"file outside the roots: {p}"
    still_serves(v)


def test_local_part_traversal_never_escapes():
    v = server()
    d = v.dir
    bad = ['"../../x"@example.org', "a/b@example.org", '".hidden"@example.org',
           '"../escape"@example.org', "../../y@example.org", ".dot@example.org",
           '".."@example.org']
    good = "traversal-ok@example.org"
    before = tree(d)
    # what a traversal could reach: next to the root and one level up (the
    # machine's own /tmp may hold such names: they must stay as they are)
    reach = [os.path.join(base, name) for base in (d, os.path.dirname(d))
             for name in ("x", "y", "escape")]
    reach_before = {p: snapshot(p) for p in reach}
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
        accepted = []
        for b in bad + [good]:
            r = c.cmd(f"RCPT TO:<{b}>")
            if r.code == 250:
                accepted.append(b)
            else:
                assert 500 <= r.code < 600, r
        assert good in accepted
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: traversal\r\n\r\nx\r\n.\r\n")
        qid = queue_id(c.reply())
    v.wait_maildir(good)
    for b in accepted:
        if b == good:
            continue
        # the recipient fails permanently, logged with the queue id
        core = re.escape(b.rsplit("@", 1)[0].strip('"'))
        lines = v.wait_log(qid_log(qid) + rf'to=<"?{core}"?@example\.org>.*fail', timeout=10)
        assert not any("delivered" in l for l in lines), lines
    time.sleep(0.3)
    new = tree(d) - before
    mail_new = {p for p in new if p.startswith("mail" + os.sep)}
    for p in new - mail_new:
        assert p.split(os.sep)[0] in ("queue", "vsmtpd.log"), f"written outside the maildir root: {p}"
    for p in mail_new:
        parts = p.split(os.sep)
        # the sender's maildir gets the bounce for the failed recipients
        bounce = parts[1] == "example.net" and (len(parts) == 2 or parts[2] == "a")
        assert bounce or (parts[1] == "example.org"
                          and (len(parts) == 2 or parts[2] == "traversal-ok")), \
            f"unexpected path under the maildir root: {p}"
    for p in reach:
        assert snapshot(p) == reach_before[p], f"a traversal wrote {p}"


def test_quoted_local_part_is_the_same_mailbox():
    """RFC 5321 4.1.2: "bob"@example.org and bob@example.org are one
    mailbox; %l is the local part, not its quoted wire form (otherwise the
    quotes also hide a leading dot from the template check)."""
    v = server()
    for rcpt in ("quoted-same@example.org", '"quoted-same"@example.org'):
        r, qid = v.send_mail("a@example.net", rcpt, f"Subject: to {rcpt}\n\nx\n")
        assert qid, r
    got = v.wait_maildir("quoted-same@example.org", 2, timeout=5)
    assert len(got) == 2
    assert not os.path.exists(os.path.join(v.mail_dir, "example.org", '"quoted-same"')), \
        "the quoted form named its own maildir"

# --------------------------------------------------------- error handling


def test_max_errors_closes():
    v = Vsmtpd(settings={"vsmtpd": {"max_errors": "3"}}).start()
    with v.smtp() as c:
        c.ehlo()
        expect(c.cmd("NOOP"), 250)
        got = []
        for i in range(5):
            try:
                c.send(f"BOGUS{i}\r\n")
            except OSError:
                break
            try:
                r = c.reply(timeout=5)
            except SmtpClosed:
                break
            got.append(r)
            if r.code == 421:
                break
        errors = [r for r in got if r.code != 421]
        assert got and got[-1].code == 421, f"no 421 after repeated errors: {got}"
        expect(got[-1], 421, f"4.7.0 {HOSTNAME} Error: too many errors")
        assert len(errors) in (2, 3) and all(r.code == 502 for r in errors), got
        assert c.closed(5), "not closed after 421"
    still_serves(v)
    v.stop()


def test_tarpit_delay():
    v = Vsmtpd(settings={"vsmtpd": {"tarpit_after": "1", "tarpit_delay": "1s"}}).start()
    with v.smtp() as c:
        c.ehlo()
        t0 = time.monotonic()
        expect(c.cmd("BOGUS1"), 502)
        first = time.monotonic() - t0
        t0 = time.monotonic()
        expect(c.cmd("BOGUS2"), 502)
        second = time.monotonic() - t0
        t0 = time.monotonic()
        expect(c.cmd("NOOP"), 250)
        ok = time.monotonic() - t0
    # upper bounds leave room for a loaded CI machine; the delay itself is 1 s
    assert first < 0.8, f"first error reply took {first:.2f}s"
    assert second >= 0.9, f"second error reply not delayed: {second:.2f}s"
    assert second < 3, f"second error reply took {second:.2f}s"
    assert ok < 0.8, f"a good reply was delayed {ok:.2f}s"
    v.stop()


def drip(c, data, interval, stop):
    for b in data:
        if stop.is_set():
            return
        try:
            c.send(bytes([b]))
        except OSError:
            return
        time.sleep(interval)


def test_slowloris_command_timeout():
    v = Vsmtpd(settings={"vsmtpd": {"command_timeout": "2s"}}).start()
    with v.smtp() as c:
        stop = threading.Event()
        t0 = time.monotonic()
        th = threading.Thread(target=drip, args=(c, b"NOOP " + b"x" * 100, 0.5, stop), daemon=True)
        th.start()
        try:
            r = c.reply(timeout=8)
        finally:
            stop.set()
        took = time.monotonic() - t0
        expect(r, 421, f"4.4.2 {HOSTNAME} Error: timeout exceeded")
        assert 1.5 <= took <= 4.5, f"421 after {took:.1f}s (command_timeout = 2s)"
        assert c.closed(3)
        th.join(5)
    still_serves(v)
    v.stop()


def test_slowloris_data_timeout():
    v = Vsmtpd(settings={"vsmtpd": {"data_timeout": "2s"}}).start()
    c = open_data(v, "slowdata@example.org")
    stop = threading.Event()
    t0 = time.monotonic()
    th = threading.Thread(target=drip, args=(c, b"Subject: slow\r\n\r\n" + b"x" * 100, 0.3, stop),
                          daemon=True)
    th.start()
    try:
        r = c.reply(timeout=8)
    finally:
        stop.set()
    took = time.monotonic() - t0
    expect(r, 421, f"4.4.2 {HOSTNAME} Error: timeout exceeded")
    assert 1.5 <= took <= 4.5, f"421 after {took:.1f}s (data_timeout = 2s)"
    assert c.closed(3)
    c.close()
    th.join(5)
    spool_empty(v)
    v.stop()


# The per-IP limits exempt limit_exceptions (127.0.0.0/8 by default).  The
# spec has tests set it empty; the flood tests below use a network that
# does not hold 127.0.0.1 instead, so they test the limits even while an
# empty value is refused (test_limit_exceptions_may_be_empty checks that).
NO_EXCEPTION = "192.0.2.0/24"


def test_limit_exceptions_may_be_empty():
    v = Vsmtpd(settings={"vsmtpd": {"limit_exceptions": ""}})
    rc, out = v.check()
    assert rc == 0, f"vsmtpd --check refuses 'limit_exceptions =' (empty): {out}"
    v.start()
    with v.smtp() as c:
        expect(c.greeting, 220)
    v.stop()


def test_connection_flood_per_ip():
    v = Vsmtpd(settings={"vsmtpd": {"max_connections_per_ip": "3",
                                    "limit_exceptions": NO_EXCEPTION}}).start()
    held = [v.smtp() for _ in range(3)]
    for c in held:
        expect(c.greeting, 220)
    c4 = v.smtp(greeting=False)
    expect(c4.reply(), 421, f"4.7.0 {HOSTNAME} Error: too many connections from 127.0.0.1")
    assert c4.closed(5)
    c4.close()
    # the first three are still served
    for c in held:
        expect(c.cmd("NOOP"), 250)
    held[0].cmd("QUIT")
    held[0].close()
    greets_again(v)
    for c in held[1:]:
        c.close()
    v.stop()


def test_max_connections():
    v = Vsmtpd(settings={"vsmtpd": {"max_connections": "2"}}).start()
    held = [v.smtp() for _ in range(2)]
    c3 = v.smtp(greeting=False)
    expect(c3.reply(), 421, f"4.7.0 {HOSTNAME} Error: too many connections")
    assert c3.closed(5)
    c3.close()
    expect(held[1].cmd("NOOP"), 250)
    held[0].close()
    greets_again(v)
    held[1].close()
    v.stop()


def test_connection_rate_per_ip():
    v = Vsmtpd(settings={"vsmtpd": {"connection_rate_per_ip": "3",
                                    "limit_exceptions": NO_EXCEPTION}}).start()
    for i in range(3):
        with v.smtp() as c:
            expect(c.greeting, 220)
            c.cmd("QUIT")
    c = v.smtp(greeting=False)
    expect(c.reply(), 421, f"4.7.0 {HOSTNAME} Error: too many connections from 127.0.0.1")
    assert c.closed(5)
    c.close()
    v.stop()


run([test_smuggling_sequences_normalize, test_smuggling_sequences_reject, test_bare_lf_in_command,
     test_bare_lf_normalize_stored_with_crlf, test_dot_stuffing_round_trip,
     test_commands_before_greeting, test_long_command_lines, test_megabyte_without_lf_bounded,
     test_data_line_longer_than_max_line_length, test_address_length_limits,
     test_size_parameter_and_real_overflow, test_too_many_recipients, test_huge_headers_bounded,
     test_nul_in_command, test_nul_in_body_stored_verbatim,
     test_crlf_nul_in_xtext_never_stored_or_logged, test_shell_metacharacters_never_reach_a_shell,
     test_local_part_traversal_never_escapes, test_quoted_local_part_is_the_same_mailbox,
     test_max_errors_closes, test_tarpit_delay,
     test_slowloris_command_timeout, test_slowloris_data_timeout,
     test_limit_exceptions_may_be_empty, test_connection_flood_per_ip,
     test_max_connections, test_connection_rate_per_ip])
