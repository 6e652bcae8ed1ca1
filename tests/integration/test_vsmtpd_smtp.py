#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vsmtpd's SMTP command set as real clients see it: the greeting and the
EHLO keywords, HELO, sequencing errors, RSET/NOOP/VRFY/EXPN/HELP/QUIT,
unknown commands, PIPELINING (RFC 2920) with a raw socket, Python smtplib
with 8BITMIME and SMTPUTF8, DSN parameters kept in the queued envelope,
CHUNKING/BDAT (RFC 3030), swaks with an attachment and with --pipeline.
The expected replies are the ones of the vsmtpd spec (Postfix's wording)."""
import email, email.policy, os, random, re, smtplib, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir
from vsmtpdlib import (expect, HOSTNAME, SmtpClosed, Vsmtpd, find_message, qid_log, queue_id,
                       strip_trace)

_servers = {}


def server(kind="maildir"):
    """Shared servers of this file: "maildir" delivers into DIR/mail/%d/%l;
    "keep" delivers nowhere ([delivery] default = a relay that refuses the
    connection: recipients stay queued as deferred), so the envelope can be
    read in incoming/;
    "small": max_message_size = 10K; "novrfy": vrfy = disabled."""
    if kind not in _servers:
        settings = {
            "maildir": {},
            "keep": {"delivery": {"default": "relay:[127.0.0.1]:1"}},
            "small": {"limits": {"max_message_size": "10K"}},
            "novrfy": {"vsmtpd": {"vrfy": "disabled"}},
        }[kind]
        _servers[kind] = Vsmtpd(settings=settings).start()
    return _servers[kind]


def unfold(headers_bytes):
    return re.sub(rb"\r?\n[ \t]+", b" ", headers_bytes)


MSG = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody line\r\n"

# ------------------------------------------------------------------ commands


def test_greeting_and_ehlo_keywords():
    v = server()
    with v.smtp() as c:
        expect(c.greeting, 220, f"{HOSTNAME} ESMTP vsmtpd")
        r = c.ehlo("client.test")
        assert len(r.lines) > 1, f"EHLO reply is not multi-line: {r}"
        assert r.lines[0].split()[0] == HOSTNAME, r
        kw = r.keywords()
        want = {"PIPELINING", "SIZE", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8",
                "CHUNKING"}
        # No certificate and no passwd_file here: neither STARTTLS nor AUTH.
        assert set(kw) == want, f"EHLO keywords {sorted(kw)}, want {sorted(want)}: {r}"
        assert kw["SIZE"] == str(50 * 1024 * 1024), f"SIZE is not max_message_size (50M): {r}"
        # lower-case verbs work as well
        expect(c.cmd("noop"), 250, "2.0.0 Ok")
    with server("small").smtp() as c:
        assert c.ehlo().keywords().get("SIZE") == "10240", "SIZE does not follow max_message_size"


def test_helo_and_plain_smtp_transaction():
    v = server()
    rcpt = "helo-user@example.org"
    with v.smtp() as c:
        r = c.cmd("HELO client.test")
        expect(r, 250)
        assert len(r.lines) == 1 and r.lines[0].split()[0] == HOSTNAME, f"HELO reply: {r}"
        r, qid = v.send_mail("a@example.net", rcpt, MSG, client=c)
        assert qid, r
    got = v.wait_maildir(rcpt)
    assert len(got) == 1
    # HELO (not EHLO): the Received header says SMTP, not ESMTP
    hdr = unfold(got[0].split(b"\n\n", 1)[0]).decode()
    assert re.search(r"^Received: from client\.test .* by mx\.test \(vsmtpd\) with SMTP id " + qid,
                     hdr, re.M), hdr


def test_helo_ehlo_without_argument():
    with server().smtp() as c:
        expect(c.cmd("HELO"), 501, enhanced="5.5.4")
        expect(c.cmd("EHLO"), 501, enhanced="5.5.4")
        # still no HELO/EHLO seen
        expect(c.cmd("MAIL FROM:<a@example.net>"), 503, "5.5.1 Error: send HELO/EHLO first")


def test_sequencing_errors():
    with server().smtp() as c:
        expect(c.cmd("MAIL FROM:<a@example.net>"), 503, "5.5.1 Error: send HELO/EHLO first")
        expect(c.cmd("RCPT TO:<b@example.org>"), 503, enhanced="5.5.1")
        c.ehlo()
        expect(c.cmd("RCPT TO:<b@example.org>"), 503, "5.5.1 Error: need MAIL command")
        expect(c.cmd("DATA"), 503, enhanced="5.5.1")
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0 Ok")
        expect(c.cmd("MAIL FROM:<a@example.net>"), 503, "5.5.1 Error: nested MAIL command")
        expect(c.cmd("DATA"), 503, "5.5.1 Error: need RCPT command")
        expect(c.cmd("RCPT TO:<b@example.org>"), 250, "2.1.5 Ok")
        expect(c.cmd("RSET"), 250, "2.0.0 Ok")
        # RSET ended the transaction
        expect(c.cmd("RCPT TO:<b@example.org>"), 503, "5.5.1 Error: need MAIL command")
        expect(c.cmd("DATA"), 503, enhanced="5.5.1")
        # ... but kept the EHLO
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0 Ok")


def test_rset_noop_quit():
    v = server()
    rcpt = "rset-user@example.org"
    with v.smtp() as c:
        expect(c.cmd("NOOP"), 250, "2.0.0 Ok")
        expect(c.cmd("RSET"), 250, "2.0.0 Ok")
        c.ehlo()
        expect(c.cmd("MAIL FROM:<first@example.net>"), 250)
        expect(c.cmd("RCPT TO:<dropped@example.org>"), 250)
        expect(c.cmd("RSET"), 250, "2.0.0 Ok")
        r, qid = v.send_mail("second@example.net", rcpt, MSG, client=c)
        assert qid, r
        expect(c.cmd("QUIT"), 221, "2.0.0 Bye")
        assert c.closed(5), "the server did not close after QUIT"
    got = v.wait_maildir(rcpt)
    assert b"Return-Path: <second@example.net>" in got[0], got[0][:300]
    time.sleep(0.3)
    assert not os.path.exists(v.maildir("dropped@example.org")), "RSET recipient got mail"


def test_vrfy_both_modes():
    with server().smtp() as c:
        expect(c.cmd("VRFY bob"), 252, "2.0.0 Cannot VRFY user, but will accept message")
        c.ehlo()
        expect(c.cmd("VRFY <bob@example.org>"), 252, enhanced="2.0.0")
    with server("novrfy").smtp() as c:
        c.ehlo()
        expect(c.cmd("VRFY bob"), 502, "5.5.1 VRFY command is disabled")
        expect(c.cmd("NOOP"), 250)


def test_expn_help_unknown():
    with server().smtp() as c:
        c.ehlo()
        expect(c.cmd("EXPN staff"), 502)
        r = c.cmd("HELP")
        expect(r, 214, enhanced="2.0.0")
        expect(c.cmd("FOO bar"), 502, "5.5.2 Error: command not recognized")
        expect(c.cmd("XYZZY"), 502, "5.5.2 Error: command not recognized")
        expect(c.cmd("NOOP"), 250, "2.0.0 Ok")


def test_transaction_replies_and_trace_headers():
    v = server()
    r1, r2 = "trace1@example.org", "trace2@example.org"
    with v.smtp() as c:
        c.ehlo("client.test")
        expect(c.cmd("MAIL FROM:<sender@example.net>"), 250, "2.1.0 Ok")
        expect(c.cmd(f"RCPT TO:<{r1}>"), 250, "2.1.5 Ok")
        expect(c.cmd("DATA"), 354, "End data with <CR><LF>.<CR><LF>")
        c.send(MSG + b".\r\n")
        r = c.reply()
        expect(r, 250, re.compile(r"^2\.0\.0 Ok: queued as [0-9A-F]{16}$"))
        qid = queue_id(r)
        # a second transaction in the session: two recipients
        r, qid2 = v.send_mail("sender@example.net", [r1, r2], MSG, client=c)
        assert qid2 and qid2 != qid and qid2 > qid, (qid, qid2)
    got = v.wait_maildir(r1, 2)
    one, two = find_message(got, f"id {qid}"), find_message(got, f"id {qid2}")
    head = unfold(one.split(b"\n\n", 1)[0]).decode()
    lines = head.split("\n")
    assert lines[0] == "Return-Path: <sender@example.net>", lines[:3]
    assert lines[1] == f"Delivered-To: {r1}", lines[:3]
    assert re.match(r"Received: from client\.test \((\S+ )?\[127\.0\.0\.1\]\) by mx\.test "
                    rf"\(vsmtpd\) with ESMTP id {qid} for <{re.escape(r1)}>; ", lines[2]), lines[2]
    # two recipients: no "for"
    rec2 = [l for l in unfold(two.split(b"\n\n", 1)[0]).decode().split("\n")
            if l.startswith("Received:")][0]
    assert f"id {qid2}" in rec2 and " for " not in rec2, rec2
    assert strip_trace(one) == MSG.replace(b"\r\n", b"\n"), one
    v.wait_log(qid_log(qid) + r"queued from=<sender@example\.net> nrcpt=1 size=\d+")
    v.wait_log(qid_log(qid2) + r"queued from=<sender@example\.net> nrcpt=2 size=\d+")
    v.wait_log(qid_log(qid) + rf"to=<{re.escape(r1)}> delivered maildir=")

# --------------------------------------------------------------- PIPELINING


def test_pipelining_groups():
    """RFC 2920: MAIL/RCPT/RCPT/DATA in one write; the message content, its
    end and the next envelope in one write; then the last content + QUIT."""
    v = server()
    a, b = "pipe-a@example.org", "pipe-b@example.org"
    with v.smtp() as c:
        assert "PIPELINING" in c.ehlo().keywords()
        c.send(f"MAIL FROM:<p@example.net>\r\nRCPT TO:<{a}>\r\nRCPT TO:<nobody@[999.1.1.1]>\r\n"
               f"RCPT TO:<{b}>\r\nDATA\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 250, 501, 250, 354], rs
        c.send(b"Subject: first\r\n\r\nfirst body\r\n.\r\n"
               + f"MAIL FROM:<p2@example.net>\r\nRCPT TO:<{a}>\r\nDATA\r\n".encode())
        rs = c.replies(4)
        assert [r.code for r in rs] == [250, 250, 250, 354], rs
        q1 = queue_id(rs[0])
        c.send(b"Subject: second\r\n\r\nsecond body\r\n.\r\nQUIT\r\n")
        rs = c.replies(2)
        assert [r.code for r in rs] == [250, 221], rs
        q2 = queue_id(rs[0])
        assert c.closed(5)
    assert q1 != q2
    got_a = v.wait_maildir(a, 2)
    got_b = v.wait_maildir(b, 1)
    assert b"first body" in find_message(got_a, f"id {q1}"), got_a
    assert b"second body" in find_message(got_a, f"id {q2}"), got_a
    assert b"first body" in got_b[0] and len(got_b) == 1


def test_pipelining_whole_transaction_in_one_write():
    """MAIL, RCPT, DATA, the content and QUIT in one write: the content comes
    before the 354 (RFC 2920: DATA ends a group).  The spec refuses that
    (commands after an unfinished DATA → 554 5.5.0 and close, as Postfix's
    smtpd_forbid_unauth_pipelining): nothing may be queued."""
    v = server()
    rcpt = "whole@example.org"
    with v.smtp() as c:
        c.ehlo()
        c.send(f"MAIL FROM:<w@example.net>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
               "Subject: all at once\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        got = []
        try:
            while True:
                got.append(c.reply(timeout=5))
        except SmtpClosed:
            pass
        assert [r.code for r in got[:2]] == [250, 250], got
        rest = got[2:]
        sync = "5.5.0 Error: SMTP protocol synchronization"
        assert rest and rest[-1].code == 554 and rest[-1].text == sync, \
            f"want 250, 250, 554 5.5.0 and close; got {got}"
        assert all(r.code in (354, 554) for r in rest), got
        assert not any("queued as" in r.text for r in got), got
    time.sleep(0.5)
    assert not v.maildir_messages(rcpt), "the pipelined message was delivered"

# ---------------------------------------------------- 8BITMIME and SMTPUTF8


UTF8_MSG = ("From: Jösé <jösé@example.net>\r\nTo: jürgen@example.org\r\n"
            "Subject: Grüße aus Köln\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Schöne Grüße — ünïcödé ✓\r\n").encode("utf-8")


def test_smtplib_8bitmime_smtputf8_delivered():
    v = server()
    rcpt = "jürgen@example.org"
    with smtplib.SMTP("127.0.0.1", v.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        assert s.has_extn("8bitmime") and s.has_extn("smtputf8"), s.esmtp_features
        refused = s.sendmail("jösé@example.net", [rcpt], UTF8_MSG,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}, refused
    got = v.wait_maildir(rcpt)
    assert len(got) == 1
    assert got[0].startswith("Return-Path: <jösé@example.net>\n".encode()), got[0][:200]
    assert strip_trace(got[0]) == UTF8_MSG.replace(b"\r\n", b"\n"), got[0]


def test_smtplib_utf8_envelope_flags():
    v = server("keep")
    with smtplib.SMTP("127.0.0.1", v.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        s.command_encoding = "utf-8"
        code, resp = s.mail("jösé@example.net", ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250, (code, resp)
        code, resp = s.rcpt("jürgen@example.org")
        assert code == 250, (code, resp)
        code, resp = s.data(UTF8_MSG)
        assert code == 250, (code, resp)
    qid = re.search(r"queued as ([0-9A-F]{16})", resp.decode()).group(1)
    env = v.wait_queued(qid)
    assert env["id"] == qid and env["sender"] == "jösé@example.net", env
    assert env["smtputf8"] is True and env["body"] == "8BITMIME", env
    assert [r["address"] for r in env["recipients"]] == ["jürgen@example.org"], env
    assert v.queued_message(qid).endswith(UTF8_MSG), "queued message differs from the one sent"


def test_utf8_address_without_smtputf8_refused():
    with server().smtp() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<jösé@example.net>")
        assert 500 <= r.code < 600, f"8-bit sender without SMTPUTF8 accepted: {r}"
        expect(c.cmd("MAIL FROM:<jose@example.net>"), 250)
        r = c.cmd("RCPT TO:<jürgen@example.org>")
        assert 500 <= r.code < 600, f"8-bit recipient without SMTPUTF8 accepted: {r}"

# ---------------------------------------------------------------------- DSN


def test_dsn_parameters_kept_in_envelope():
    v = server("keep")
    with v.smtp() as c:
        assert "DSN" in c.ehlo().keywords()
        expect(c.cmd("MAIL FROM:<dsn@example.net> RET=HDRS ENVID=QQ+2Bid.1"), 250)
        expect(c.cmd("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org"),
               250)
        expect(c.cmd("RCPT TO:<c@example.org> NOTIFY=NEVER"), 250)
        expect(c.cmd("RCPT TO:<d@example.org> NOTIFY=DELAY"), 250)
        expect(c.cmd("RCPT TO:<e@example.org>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(MSG + b".\r\n")
        qid = queue_id(c.reply())
    env = v.wait_queued(qid)
    assert env["id"] == qid and env["sender"] == "dsn@example.net", env
    assert env["ret"] == "HDRS", env
    assert env["envid"] == "QQ+id.1", env
    assert env["client"]["ip"] == "127.0.0.1" and env["client"]["helo"] == "client.test", env
    assert env["size"] == len(v.queued_message(qid)), env
    rc = {r["address"]: r for r in env["recipients"]}
    assert list(rc) == ["b@example.org", "c@example.org", "d@example.org", "e@example.org"], env
    orcpt = rc["b@example.org"]["orcpt"]
    kind, _, addr = orcpt.partition(";")
    assert kind.lower() == "rfc822" and addr == "b+x@example.org", orcpt
    assert set(rc["b@example.org"]["notify"]) == {"success", "failure"}, rc["b@example.org"]
    assert rc["c@example.org"]["notify"] == ["never"], rc["c@example.org"]
    assert rc["d@example.org"]["notify"] == ["delay"], rc["d@example.org"]
    assert not rc["e@example.org"].get("notify") and not rc["e@example.org"].get("orcpt"), rc
    for r in env["recipients"]:
        assert r["state"] in ("pending", "deferred"), r


def test_dsn_bad_parameters_refused():
    with server().smtp() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.net> RET=MAYBE")
        assert 500 <= r.code < 600, r
        expect(c.cmd("MAIL FROM:<a@example.net> RET=FULL"), 250)
        for bad in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "ORCPT=rfc822",
                    "NOTIFY=SUCCESS NOTIFY=DELAY"):
            r = c.cmd(f"RCPT TO:<b@example.org> {bad}")
            assert 500 <= r.code < 600, f"{bad} accepted: {r}"
        r = c.cmd("RCPT TO:<b@example.org> FOO=BAR")
        assert 500 <= r.code < 600, f"unknown RCPT parameter accepted: {r}"

# ----------------------------------------------------------------- CHUNKING


def test_bdat_chunks():
    v = server()
    rcpt = "bdat@example.org"
    # Raw octets: no dot-unstuffing, a lone "." line does not end anything.
    part1 = b"From: a@example.net\r\nSubject: chunked\r\n\r\nfirst\r\n..two dots stay\r\n"
    part2 = b".\r\n.one\r\nlast line\r\n"
    with v.smtp() as c:
        assert "CHUNKING" in c.ehlo().keywords()
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
        expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
        c.send(f"BDAT {len(part1)}\r\n".encode() + part1)
        expect(c.reply(), 250)
        c.send(f"BDAT {len(part2)} LAST\r\n".encode() + part2)
        r = c.reply()
        q1 = queue_id(r)
        # pipelined: a chunk and an empty LAST chunk in one write
        expect(c.cmd("MAIL FROM:<b@example.net>"), 250)
        expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
        body = b"Subject: pipelined\r\n\r\nhello\r\n"
        c.send(f"BDAT {len(body)}\r\n".encode() + body + b"BDAT 0 LAST\r\n")
        rs = c.replies(2)
        assert rs[0].code == 250 and rs[1].code == 250, rs
        q2 = queue_id(rs[1])
        assert q1 != q2
    got = v.wait_maildir(rcpt, 2)
    one, two = find_message(got, f"id {q1}"), find_message(got, f"id {q2}")
    assert strip_trace(one) == (part1 + part2).replace(b"\r\n", b"\n"), one
    assert strip_trace(two) == body.replace(b"\r\n", b"\n"), two


def test_bdat_mixed_with_data_refused():
    v = server()
    rcpt = "mixed@example.org"
    with v.smtp() as c:
        c.ehlo()
        # BDAT without a transaction: refused, and its chunk is read and
        # thrown away (RFC 3030 §2), not taken as commands.
        # (a QUIT inside the chunk would end the session if it were read as a command)
        c.send(b"BDAT 6\r\nQUIT\r\n")
        r = c.reply()
        assert 500 <= r.code < 600, f"BDAT without MAIL: {r}"
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("MAIL FROM:<a@example.net>"), 250)
        expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
        chunk = b"Subject: half\r\n\r\n"
        c.send(f"BDAT {len(chunk)}\r\n".encode() + chunk)
        expect(c.reply(), 250)
        r = c.cmd("DATA")
        assert 500 <= r.code < 600, f"DATA after BDAT accepted: {r}"
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("NOOP"), 250)
    time.sleep(0.5)
    assert not v.maildir_messages(rcpt), "a message mixing BDAT and DATA was delivered"

# -------------------------------------------------------------------- swaks


def swaks(port, *args):
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test", *args],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def swaks_data(transcript):
    """The DATA content swaks sent (its " -> " lines between the 354 and
    the lone "."), dot-unstuffed, LF line ends."""
    out, inside = [], False
    for line in transcript.splitlines():
        m = re.match(r"^\s*(->|~>|<-|<~|<\*\*) ?(.*)$", line)
        if not m:
            continue
        side, text = m.group(1), m.group(2)
        if not inside:
            if side in ("<-", "<~") and text.strip().startswith("354"):
                inside = True
            continue
        if side in ("->", "~>"):
            if text == ".":
                break
            out.append(text[1:] if text.startswith(".") else text)
    return ("\n".join(out) + "\n").encode()


def test_swaks_attachment_round_trip():
    v = server()
    d = tmpdir()
    payload = random.Random(7).randbytes(100 * 1024)
    path = os.path.join(d, "payload.bin")
    with open(path, "wb") as f:
        f.write(payload)
    rcpt = "attach@example.org"
    rc, out = swaks(v.port, "--from", "a@example.net", "--to", rcpt, "--attach-name",
                    "payload.bin", "--attach", "@" + path)
    assert rc == 0, out[-3000:]
    assert re.search(r"<-\s+250 2\.0\.0 Ok: queued as [0-9A-F]{16}", out), out[-2000:]
    sent = swaks_data(out)
    assert len(sent) > len(payload), "could not read the DATA swaks sent from its transcript"
    got = v.wait_maildir(rcpt)[0]
    assert strip_trace(got) == sent, "delivered message differs from what swaks sent"
    msg = email.message_from_bytes(got, policy=email.policy.default)
    parts = [p for p in msg.walk() if p.get_filename() == "payload.bin"]
    assert len(parts) == 1 and parts[0].get_content() == payload, "attachment changed"


def test_swaks_pipeline():
    v = server()
    rcpt = "swakspipe@example.org"
    rc, out = swaks(v.port, "--pipeline", "--from", "a@example.net", "--to",
                    f"{rcpt},other-pipe@example.org")
    assert rc == 0, out[-3000:]
    assert re.search(r"queued as [0-9A-F]{16}", out), out[-2000:]
    assert len(v.wait_maildir(rcpt)) == 1
    assert len(v.wait_maildir("other-pipe@example.org")) == 1


run([test_greeting_and_ehlo_keywords, test_helo_and_plain_smtp_transaction,
     test_helo_ehlo_without_argument, test_sequencing_errors, test_rset_noop_quit,
     test_vrfy_both_modes, test_expn_help_unknown, test_transaction_replies_and_trace_headers,
     test_pipelining_groups, test_pipelining_whole_transaction_in_one_write,
     test_smtplib_8bitmime_smtputf8_delivered, test_smtplib_utf8_envelope_flags,
     test_utf8_address_without_smtputf8_refused, test_dsn_parameters_kept_in_envelope,
     test_dsn_bad_parameters_refused, test_bdat_chunks, test_bdat_mixed_with_data_refused,
     test_swaks_attachment_round_trip, test_swaks_pipeline])
