#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The rules in vsmtpd, seen by an SMTP client and in the mailboxes:
verdicts at each stage (connect reject/tempfail, helo reject, mail
tempfail, rcpt reject with a custom and a multi-line text, data reject on a
subject and on a header, data tempfail), discard (250, nothing delivered),
quarantine (250, in `vpsctl quarantine`, RAW = what was received plus the
Received header, not delivered), modifications applied to the delivered
message and envelope (add/set/remove_header, set_sender -> Return-Path,
add_rcpt, remove_rcpt), export json/raw (the formats of `vpsctl quarantine
show`), and the delivery stage routing into a Maildir++ folder and an mbox
read back with Python's mailbox module."""
import json, mailbox, os, re, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir
from vsmtpdlib import Vsmtpd, VPSCTL, queue_id, dot_stuff

RECEIVED = re.compile(rb"\AReceived: from client\.test \([^)]*\[127\.0\.0\.1\]\)\r\n?[ \t]+"
                      rb"|\AReceived: from client\.test \([^)]*\[127\.0\.0\.1\]\) ")


def message(subject, body="Hello.\r\n", extra=""):
    return (f"From: Alice <alice@src.test>\r\nTo: Bob <bob@dst.test>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@src.test>\r\n{extra}\r\n{body}").encode()


def server(rules, **settings):
    """A started vsmtpd with these rules; settings: {"group": {"key": value}}."""
    s = {"queue": {"run_interval": "1s"}}
    s.update(settings)
    return Vsmtpd(rules=rules, settings=s).start()


def ctl(v, *args, binary=False, check=True):
    p = subprocess.run([VPSCTL, "-c", v.conf_path, *args], capture_output=True,
                       text=not binary, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"vpsctl {args} exited {p.returncode}: {p.stderr}")
    return p


def headers_of(msg):
    """The header section of a delivered message (LF line ends), unfolded,
    as a list of (name, value)."""
    head = msg.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    head = re.sub(r"\n[ \t]+", " ", head)
    out = []
    for line in head.split("\n"):
        name, _, value = line.partition(":")
        out.append((name, value.strip()))
    return out


def header_values(msg, name):
    return [v for n, v in headers_of(msg) if n.lower() == name.lower()]


def deliver(v, rcpts, data, sender="alice@src.test"):
    """One transaction in its own session; the reply to the end of data
    (whatever it is: the harness's send_mail wants "queued as ID")."""
    with v.smtp() as c:
        c.ehlo("client.test")
        r = c.cmd(f"MAIL FROM:<{sender}>")
        assert r.code == 250, r
        for rc in rcpts:
            r = c.cmd(f"RCPT TO:<{rc}>")
            assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(data) + b".\r\n")
        r = c.reply()
        c.cmd("QUIT")
    return r


def settle(v, seconds=1.5):
    """Give the delivery runner time to do what it must not do."""
    time.sleep(seconds)


def assert_queue_empty(v):
    for area in ("tmp", "incoming", "hold"):
        assert v.queue_files(area) == [], (area, v.queue_files(area))


# ---- verdicts at each stage -------------------------------------------------------------


def test_connect_reject_and_close():
    v = server('connect { rule "c" when client.ip in 127.0.0.0/8 => '
               'reject 554 5.7.1 "No connections from here" }\n')
    c = v.smtp(greeting=False)
    r = c.reply()
    assert (r.code, r.text) == (554, "5.7.1 No connections from here"), r
    assert c.closed(5), "the session stays open after a connect reject"
    c.close()
    v.wait_log(r"stage=connect verdict=reject")
    v.stop()


def test_connect_tempfail_421_and_close():
    v = server('connect { rule "c" => tempfail }\n')
    c = v.smtp(greeting=False)
    r = c.reply()
    assert r.code == 421, r
    assert c.closed(5)
    c.close()
    v.stop()


def test_helo_reject_then_retry():
    v = server('helo { rule "h" when helo.name == "bad.test" => reject 550 5.7.1 "Bad HELO" }\n')
    with v.smtp() as c:
        r = c.cmd("EHLO bad.test")
        assert (r.code, r.text) == (550, "5.7.1 Bad HELO"), r
        assert c.cmd("EHLO good.test").code == 250
        assert c.cmd("MAIL FROM:<alice@src.test>").code == 250
    v.wait_log(r"stage=helo verdict=reject")
    v.stop()


def test_mail_tempfail():
    v = server('mail { rule "m" when mail.from.domain == "later.test" => '
               'tempfail 451 4.7.1 "Try again later, please" }\n')
    with v.smtp() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<alice@later.test>")
        assert (r.code, r.text) == (451, "4.7.1 Try again later, please"), r
        # no transaction began: another MAIL is not "nested"
        assert c.cmd("MAIL FROM:<alice@src.test>").code == 250
    v.stop()


def test_rcpt_reject_custom_text_only_that_recipient():
    v = server('rcpt {\n'
               '  rule "unknown" when rcpt.local == "nobody" => reject 550 5.1.1 "No such user here"\n'
               '  rule "two" when rcpt.local == "multi" => reject 550 5.7.1 "line one\\nline two"\n'
               '}\n')
    with v.smtp() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@src.test>").code == 250
        r = c.cmd("RCPT TO:<nobody@dst.test>")
        assert (r.code, r.text) == (550, "5.1.1 No such user here"), r
        r = c.cmd("RCPT TO:<multi@dst.test>")
        assert r.code == 550 and r.lines == ["5.7.1 line one", "5.7.1 line two"], r
        assert r.raw == b"550-5.7.1 line one\r\n550 5.7.1 line two\r\n", r.raw
        assert c.cmd("RCPT TO:<bob@dst.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(message("rcpt") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        qid = queue_id(r)
    v.wait_maildir("bob@dst.test")
    assert v.maildir_messages("nobody@dst.test") == [] and v.maildir_messages("multi@dst.test") == []
    v.wait_log(r"stage=rcpt verdict=reject")
    v.wait_log(rf"{qid}: queued from=<alice@src\.test> nrcpt=1 ")
    v.stop()


def test_data_reject_on_subject_and_header():
    v = server('data {\n'
               '  rule "subject" when subject =~ /forbidden/i => reject 550 5.7.1 "Subject not welcome"\n'
               '  rule "header" when header("X-Bad") == "yes" => reject 554 5.7.1 "Bad header"\n'
               '  rule "later" when subject =~ /later/ => tempfail 451 4.7.1 "Not now"\n'
               '}\n')
    r, qid = v.send_mail("alice@src.test", "bob@dst.test", message("This is FORBIDDEN"))
    assert (r.code, r.text, qid) == (550, "5.7.1 Subject not welcome", None), r
    r, qid = v.send_mail("alice@src.test", "bob@dst.test", message("fine", extra="X-Bad: yes\r\n"))
    assert (r.code, r.text) == (554, "5.7.1 Bad header"), r
    r, qid = v.send_mail("alice@src.test", "bob@dst.test", message("later"))
    assert (r.code, r.text) == (451, "4.7.1 Not now"), r
    v.wait_log(r"stage=data verdict=reject")
    settle(v)
    assert_queue_empty(v)
    assert v.all_delivered() == [], v.all_delivered()
    # and a clean one still goes through
    r, qid = v.send_mail("alice@src.test", "bob@dst.test", message("fine"))
    assert r.code == 250, r
    v.wait_maildir("bob@dst.test")
    v.stop()


def test_discard():
    v = server('data { rule "d" when subject =~ /discard me/ => discard }\n')
    r = deliver(v, ["bob@dst.test", "carol@dst.test"], message("discard me"))
    assert r.code == 250 and r.text.startswith("2.0.0 "), r
    settle(v, 2.5)
    assert v.all_delivered() == [], v.all_delivered()
    assert_queue_empty(v)
    rc, out, err = v.ctl("quarantine", "list", "--json")
    assert json.loads(out) == [], out
    v.wait_log(r"stage=data verdict=discard")
    v.stop()


def test_quarantine():
    v = server('data { rule "q" when subject =~ /quarantine me/ => quarantine "spam" }\n')
    data = message("quarantine me", body="Body line.\r\n.dot line\r\n")
    r = deliver(v, ["bob@dst.test"], data)
    assert r.code == 250, r
    rc, out, err = v.ctl("quarantine", "list", "--json")
    entries = json.loads(out)
    assert len(entries) == 1 and entries[0]["name"] == "spam", entries
    e = entries[0]
    assert e["sender"] == "alice@src.test" and e["recipients"] == ["bob@dst.test"], e
    assert e["subject"] == "quarantine me", e
    raw = ctl(v, "quarantine", "show", e["id"], "--format", "raw", binary=True).stdout
    # RAW: what was received (unstuffed, CRLF) below vsmtpd's Received header.
    assert raw.endswith(data), raw[-300:]
    trace = raw[:len(raw) - len(data)]
    assert RECEIVED.match(trace), trace
    assert trace.endswith(b"\r\n") and trace.count(b"\r\nReceived:") == 0, trace
    meta = json.loads(ctl(v, "quarantine", "show", e["id"], "--format", "json").stdout)
    assert "bob@dst.test" in json.dumps(meta), meta
    settle(v)
    assert v.all_delivered() == [], v.all_delivered()
    assert_queue_empty(v)
    v.wait_log(r"stage=data verdict=quarantine")
    v.stop()


def test_discard_and_quarantine_look_like_a_queued_message():
    """The client must not learn that its message went nowhere (the
    engine's own rule for discard; Postfix answers a milter discard with
    its usual "250 2.0.0 Ok: queued as ID"): the reply is the one of a
    message that was queued."""
    v = server('data {\n'
               '  rule "d" when subject =~ /discard/ => discard\n'
               '  rule "q" when subject =~ /quarantine/ => quarantine "spam"\n'
               '}\n')
    normal = deliver(v, ["bob@dst.test"], message("normal"))
    assert re.fullmatch(r"2\.0\.0 Ok: queued as [0-9A-F]{16}", normal.text), normal
    for subject in ("discard", "quarantine"):
        r = deliver(v, ["bob@dst.test"], message(subject))
        assert r.code == 250 and re.fullmatch(r"2\.0\.0 Ok: queued as [0-9A-F]{16}", r.text), \
            (subject, r, "a normal message gets", normal)
    v.stop()


# ---- modifications ---------------------------------------------------------------------------


def test_modifications_applied_to_the_queued_message():
    v = server('data {\n'
               '  rule "mods" => add_header "X-Added" "yes", set_header "X-Replace" "new",\n'
               '                 remove_header "X-Remove", set_sender "bounce@src.test",\n'
               '                 add_rcpt "carol@dst.test", remove_rcpt "dave@dst.test"\n'
               '}\n')
    data = message("mods", extra="X-Replace: old one\r\nX-Remove: gone\r\nX-Replace: old two\r\n")
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test", "dave@dst.test"], data)
    assert r.code == 250, r
    bob = v.wait_maildir("bob@dst.test")
    carol = v.wait_maildir("carol@dst.test")
    assert len(bob) == 1 and len(carol) == 1, (bob, carol)
    for who, m in (("bob@dst.test", bob[0]), ("carol@dst.test", carol[0])):
        assert m.startswith(b"Return-Path: <bounce@src.test>\nDelivered-To: " + who.encode() + b"\n"), m[:200]
        assert header_values(m, "X-Added") == ["yes"], m[:800]
        assert header_values(m, "X-Replace") == ["new"], m[:800]
        assert header_values(m, "X-Remove") == [], m[:800]
        assert header_values(m, "Subject") == ["mods"]
        assert m.endswith(b"\n\nHello.\n"), m[-100:]
    settle(v)
    assert v.maildir_messages("dave@dst.test") == [], "a removed recipient got the message"
    assert len(v.all_delivered()) == 2, v.all_delivered()
    assert_queue_empty(v)
    v.stop()


# ---- exports ---------------------------------------------------------------------------------


def test_export_json_and_raw_match_quarantine_formats():
    v = server('data {\n'
               '  rule "archive" => export raw "archive", export json "archive"\n'
               '  rule "q" when subject =~ /quarantine/ => quarantine "spam"\n'
               '}\n')
    exports = os.path.join(v.dir, "exports")
    data = message("quarantine and export")
    r = deliver(v, ["bob@dst.test"], data)
    assert r.code == 250, r
    files = sorted(os.listdir(exports))
    assert len(files) == 2 and files[0].endswith(".eml") and files[1].endswith(".json") \
        and files[0][:-4] == files[1][:-5], files
    for f in files:
        assert os.stat(os.path.join(exports, f)).st_mode & 0o777 == 0o600, f
    with open(os.path.join(exports, files[0]), "rb") as f:
        exp_raw = f.read()
    with open(os.path.join(exports, files[1]), "rb") as f:
        exp_json = json.loads(f.read())
    rc, out, err = v.ctl("quarantine", "list", "--json")
    (entry,) = json.loads(out)
    q_raw = ctl(v, "quarantine", "show", entry["id"], "--format", "raw", binary=True).stdout
    q_json = json.loads(ctl(v, "quarantine", "show", entry["id"], "--format", "json").stdout)
    # raw: the same message, byte for byte
    assert exp_raw == q_raw, (exp_raw[:400], q_raw[:400])
    assert exp_raw.endswith(data)
    # json: the same description (the store adds its own bookkeeping keys)
    store_keys = {"id", "name", "stored", "time", "size", "sha256"}
    for k in set(exp_json) - store_keys:
        assert k in q_json, (k, sorted(q_json))
    assert exp_json["envelope"] == q_json["envelope"], (exp_json["envelope"], q_json["envelope"])
    assert exp_json["envelope"]["from"] == "alice@src.test", exp_json
    assert exp_json["headers"]["subject"] == "quarantine and export", exp_json
    assert exp_json["client"]["ip"] == "127.0.0.1", exp_json
    # A message that is delivered is exported the same way, under its queue id.
    r, qid = v.send_mail("alice@src.test", ["bob@dst.test"], message("just export"))
    assert r.code == 250
    new = sorted(set(os.listdir(exports)) - set(files))
    assert len(new) == 2, new
    with open(os.path.join(exports, [f for f in new if f.endswith(".eml")][0]), "rb") as f:
        raw2 = f.read()
    assert raw2.endswith(message("just export")), raw2[:400]
    delivered = v.wait_maildir("bob@dst.test")[0]
    # the delivered copy is the exported one plus Return-Path/Delivered-To, with LF ends
    assert delivered.endswith(raw2.replace(b"\r\n", b"\n")), (delivered[:300], raw2[:300])
    v.stop()


# ---- the delivery stage: Maildir++ folder and mbox -----------------------------------------------


def mboxrd_unquote(text):
    return re.sub(r"(?m)^>(>*From )", r"\1", text)


def test_delivery_stage_maildir_folder_and_mbox():
    d = tmpdir()
    maildirs, mboxes = os.path.join(d, "mb"), os.path.join(d, "mbox")
    rules = ('delivery {\n'
             f'  rule "junk" when header("Subject") =~ /spam/ => deliver maildir "{maildirs}/%l/.Junk"\n'
             f'  rule "mbox" when rcpt.domain == "mbox.test" => deliver mbox "{mboxes}/%l"\n'
             '}\n')
    v = Vsmtpd(rules=rules, settings={"queue": {"run_interval": "1s"}}, dir=d).start()
    # 1. into the Maildir++ folder .Junk of bob's maildir
    r, _ = v.send_mail("alice@src.test", ["bob@dst.test"], message("cheap spam"))
    assert r.code == 250, r
    # 2. two messages into carol's mbox, with From_ lines in the bodies
    body1 = "From me, with love\r\n>From quoted\r\nFrom\r\nnot From here\r\n"
    body2 = "From the start\r\n\r\nFrom after an empty line\r\n"
    for subject, body in (("first", body1), ("second", body2)):
        r, _ = v.send_mail("alice@src.test", ["carol@mbox.test"], message(subject, body=body))
        assert r.code == 250, r
    # 3. the rest by [delivery] default
    r, _ = v.send_mail("alice@src.test", ["dan@dst.test"], message("plain"))
    assert r.code == 250, r
    v.wait_maildir("dan@dst.test")
    deadline = time.time() + 10
    while v.queue_files("incoming") and time.time() < deadline:
        time.sleep(0.05)
    assert v.queue_files("incoming") == [], v.queue_files("incoming")

    # Maildir++: bob's maildir exists as a maildir, the message is in its .Junk folder
    md = mailbox.Maildir(os.path.join(maildirs, "bob"), factory=None, create=False)
    assert md.list_folders() == ["Junk"], md.list_folders()
    assert len(md) == 0
    for sub in ("cur", "new", "tmp"):
        assert os.path.isdir(os.path.join(maildirs, "bob", sub)), sub
    assert os.path.isfile(os.path.join(maildirs, "bob", ".Junk", "maildirfolder"))
    junk = md.get_folder("Junk")
    msgs = list(junk)
    assert len(msgs) == 1 and msgs[0]["Subject"] == "cheap spam", msgs
    raw = junk.get_bytes(junk.keys()[0])
    assert raw.startswith(b"Return-Path: <alice@src.test>\nDelivered-To: bob@dst.test\n"), raw[:200]
    assert v.maildir_messages("bob@dst.test") == [], "the junk message also went to the default"

    # mbox: two messages, From_ lines in the bodies did not split them
    path = os.path.join(mboxes, "carol")
    assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    box = mailbox.mbox(path, create=False)
    got = list(box)
    assert [m["Subject"] for m in got] == ["first", "second"], [m["Subject"] for m in got]
    text = open(path, "rb").read().decode()
    assert "\n>From me, with love\n>>From quoted\nFrom\nnot From here\n" in text, text
    assert "\n>From the start\n\n>From after an empty line\n" in text, text
    for key, m, body in zip(box.keys(), got, (body1, body2)):
        assert m.get_from().startswith("alice@src.test "), m.get_from()
        raw = box.get_bytes(key)
        assert raw.startswith(b"Return-Path: <alice@src.test>\nDelivered-To: carol@mbox.test\n"), raw[:200]
        # mboxrd: one ">" less on every >*From line gives the body back exactly
        assert mboxrd_unquote(m.get_payload()) == body.replace("\r\n", "\n"), m.get_payload()
    # the default maildir got only dan's message
    assert len(v.all_delivered()) == 1, v.all_delivered()
    v.stop()


def test_template_values_are_unquoted_then_checked():
    """docs/vsmtpd.md, "Templates": "bob" is bob; a quoted local part that
    would make a hidden or parent directory, or a subdirectory, fails that
    recipient only (permanently, logged); nothing lands outside the root."""
    v = server("")
    r = deliver(v, ['"bob"@dst.test', '".hidden"@dst.test', '".."@dst.test', '"a/b"@dst.test'],
                message("quoted"))
    assert r.code == 250, r
    v.wait_maildir("bob@dst.test")
    # (the log shows each address in its canonical form: "/" needs no quotes)
    for bad in ('".hidden"', '".."', 'a/b'):
        v.wait_log(rf"to=<{re.escape(bad)}@dst\.test> failed")
    deadline = time.time() + 10
    while v.queue_files("incoming") and time.time() < deadline:
        time.sleep(0.05)
    assert_queue_empty(v)  # every recipient done: delivered or failed
    v.wait_maildir("alice@src.test")  # the bounce for the failed ones
    tree = sorted(os.path.relpath(os.path.join(root, n), v.dir)
                  for root, dirs, files in os.walk(v.dir) for n in dirs
                  if not os.path.relpath(root, v.dir).startswith(("queue", "quarantine", "exports")))
    # the sender's maildir (mail/src.test/alice) holds the bounce for the failed ones
    assert tree == ["exports", "mail", "mail/dst.test", "mail/dst.test/bob", "mail/dst.test/bob/cur",
                    "mail/dst.test/bob/new", "mail/dst.test/bob/tmp", "mail/src.test",
                    "mail/src.test/alice", "mail/src.test/alice/cur", "mail/src.test/alice/new",
                    "mail/src.test/alice/tmp", "quarantine", "queue"], tree
    v.stop()

def test_client_ptr_verified():
    """client.ptr is the verified reverse name (PTR, then a forward lookup
    that gives the address back): 127.0.0.1 is localhost on every Debian
    system (/etc/hosts both ways).  Looked up only because a rule reads it;
    it shows in the Received header."""
    v = server('helo {\n  rule "ptr" when client.ptr == "localhost" and helo.name == "bad.test"'
               ' => reject 550 5.7.1 "client is localhost"\n}\n')
    with v.smtp() as c:
        r = c.cmd("EHLO bad.test")
        assert r.code == 550 and "client is localhost" in r.text, r
    reply, qid = v.send_mail("a@src.test", ["bob@dst.test"],
                             "Subject: ptr\r\n\r\nbody\r\n")
    assert reply.code == 250, reply
    msg = v.wait_maildir("bob@dst.test")[0]
    assert b"(localhost [127.0.0.1])" in msg, msg[:300]
    v.stop()
    # without a rule reading it there is no lookup: the name stays unknown
    v = server("")
    reply, qid = v.send_mail("a@src.test", ["bob@dst.test"], "Subject: ptr\r\n\r\nbody\r\n")
    msg = v.wait_maildir("bob@dst.test")[0]
    assert b"(unknown [127.0.0.1])" in msg, msg[:300]
    v.stop()


if __name__ == "__main__":
    run([test_connect_reject_and_close, test_connect_tempfail_421_and_close,
         test_helo_reject_then_retry, test_mail_tempfail,
         test_rcpt_reject_custom_text_only_that_recipient, test_data_reject_on_subject_and_header,
         test_discard, test_quarantine, test_discard_and_quarantine_look_like_a_queued_message,
         test_modifications_applied_to_the_queued_message,
         test_export_json_and_raw_match_quarantine_formats,
         test_delivery_stage_maildir_folder_and_mbox, test_template_values_are_unquoted_then_checked,
         test_client_ptr_verified])
