#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The DSNs of mta/bounce.c as an independent reader sees them: the probe
(tests/mta/bounce-probe.c, $VPS_BOUNCE_PROBE) writes one notification per
case, and Python's email package (policy=email.policy.default) parses each:
multipart/report with report-type=delivery-status, the human-readable part,
message/delivery-status read into its header blocks (per-message, then one
per recipient) with the RFC 3464 fields, the original attached (whole as
message/rfc822, or its headers as text/rfc822-headers), no parser defects,
CRLF lines of at most 998 octets, and nothing a hostile reply sent turned
into a header field."""
import email, email.policy, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, tmpdir

PROBE = os.environ["VPS_BOUNCE_PROBE"]
CASES = ["failure-full", "failure-hdrs", "failure-big", "delay", "success", "hostile", "utf8"]
MTA = "mx.example.org"

_cache = {}


def probe():
    """{name: (raw bytes, needs_8bit)} — the probe runs once."""
    if not _cache:
        d = tmpdir()
        out = subprocess.run([PROBE, d], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        flags = dict(line.split(" needs_8bit=") for line in out.stdout.splitlines())
        assert sorted(flags) == sorted(CASES), flags
        for name in CASES:
            with open(os.path.join(d, name + ".eml"), "rb") as f:
                _cache[name] = (f.read(), flags[name] == "1")
    return _cache


def parse(name):
    raw, _ = probe()[name]
    return email.message_from_bytes(raw, policy=email.policy.default)


def all_defects(msg):
    out = list(msg.defects)
    for part in msg.walk():
        out += list(part.defects)
    return out


def parts(msg):
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    p = list(msg.iter_parts())
    assert p[0].get_content_type() == "text/plain"
    assert p[1].get_content_type() == "message/delivery-status"
    return p


def blocks(msg):
    """The report's header blocks, as email reads message/delivery-status."""
    b = parts(msg)[1].get_payload()
    assert isinstance(b, list) and len(b) >= 2, b
    return b


def xtext_decode(s):
    return re.sub(rb"\+([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  s.encode("ascii")).decode("utf-8")


def check_common(msg, subject, to="alice@example.com"):
    assert str(msg["From"]) == f"Mail Delivery System <MAILER-DAEMON@{MTA}>", msg["From"]
    assert msg["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{MTA}"
    assert str(msg["To"]) == to, msg["To"]
    assert str(msg["Subject"]) == subject
    assert str(msg["Auto-Submitted"]) == "auto-replied"
    assert str(msg["MIME-Version"]) == "1.0"
    assert msg["Date"].datetime is not None
    assert re.fullmatch(r"<[^<>@\s]+@" + re.escape(MTA) + ">", str(msg["Message-ID"]))
    per_msg = blocks(msg)[0]
    assert per_msg["Reporting-MTA"] == f"dns; {MTA}"
    assert per_msg["Arrival-Date"] == "Fri, 28 Nov 2025 21:40:00 +0000"
    assert all_defects(msg) == [], all_defects(msg)


def test_every_case_parses():
    for name in CASES:
        raw, _ = probe()[name]
        msg = parse(name)
        parts(msg)
        assert all_defects(msg) == [], (name, all_defects(msg))
        boundary = msg.get_boundary()
        assert boundary and raw.count(b"--" + boundary.encode() + b"--\r\n") == 1, name


def test_wire_form():
    for name in CASES:
        raw, eight = probe()[name]
        assert b"\0" not in raw, name
        lines = raw.split(b"\r\n")
        assert lines[-1] == b"", name
        for line in lines:
            assert b"\r" not in line and b"\n" not in line, (name, line[:80])
            assert len(line) <= 998, (name, len(line))
        # 8-bit octets exactly when the probe said 8BITMIME is needed
        assert eight == any(c >= 0x80 for c in raw), name
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", head.replace(b"\r\n", b"")), name


def test_failure_full():
    msg = parse("failure-full")
    check_common(msg, "Undelivered Mail Returned to Sender")
    p = parts(msg)
    assert len(p) == 3
    b = blocks(msg)
    assert len(b) == 3, [dict(x) for x in b]  # erin (NOTIFY=NEVER) and dave (delivered) left out
    assert b[0]["Original-Envelope-Id"] == "QQ314159"
    assert b[0]["X-Vsmtpd-Queue-ID"] == "0006431E2F3A4B5C"
    bob, carol = b[1], b[2]
    assert bob["Original-Recipient"] == "rfc822;Bob@Example.org"
    assert bob["Final-Recipient"] == "rfc822;bob@example.org"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.org"
    assert bob["Diagnostic-Code"] == ("smtp; 550 5.1.1 <bob@example.org>: Recipient address "
                                      "rejected: User unknown"), bob["Diagnostic-Code"]
    assert bob["Last-Attempt-Date"] == "Fri, 28 Nov 2025 22:10:00 +0000"
    assert carol["Final-Recipient"] == "rfc822;carol@example.org"
    assert carol["Remote-MTA"] is None
    assert carol["Diagnostic-Code"].startswith("X-vsmtpd; 550 5.1.1")
    assert carol["Original-Recipient"] is None
    text = p[0].get_content()
    assert "<bob@example.org>" in text and "<carol@example.org>" in text
    assert "erin@" not in text and "dave@" not in text
    # the original: message/rfc822 with its 8-bit body carried as is
    assert p[2].get_content_type() == "message/rfc822"
    orig = p[2].get_content()
    assert str(orig["Subject"]) == "lunch"
    assert str(orig["Message-ID"]) == "<lunch-1@example.com>"
    assert "caf\u00e9" in orig.get_content()
    assert probe()["failure-full"][1] is True


def test_failure_headers_only():
    for name in ("failure-hdrs", "failure-big"):
        msg = parse(name)
        check_common(msg, "Undelivered Mail Returned to Sender")
        p = parts(msg)
        assert len(p) == 3
        assert p[2].get_content_type() == "text/rfc822-headers", name
        headers = p[2].get_content()
        assert "Message-ID: <" in headers, name
        assert blocks(msg)[1]["Action"] == "failed"
    hdrs = parts(parse("failure-hdrs"))[2].get_content()
    assert "Subject: lunch" in hdrs and "Shall we" not in hdrs
    assert blocks(parse("failure-hdrs"))[1]["Status"] == "5.2.2"
    # over the size limit: the headers only, the DSN stays small
    big_raw, _ = probe()["failure-big"]
    assert len(big_raw) < 8000, len(big_raw)
    assert b"0123456789 0123456789" not in big_raw
    assert blocks(parse("failure-big"))[1]["Status"] == "5.3.4"


def test_delay():
    msg = parse("delay")
    check_common(msg, "Delayed Mail (still being retried)")
    b = blocks(msg)
    assert len(b) == 2  # carol was delivered
    r = b[1]
    assert r["Action"] == "delayed"
    assert r["Status"] == "4.7.1"
    assert r["Diagnostic-Code"] == "smtp; 451 4.7.1 greylisted, try again later"
    assert r["Will-Retry-Until"] == "Wed, 3 Dec 2025 21:40:00 +0000"
    p = parts(msg)
    assert p[2].get_content_type() == "text/rfc822-headers"
    assert "WARNING" in p[0].get_content()


def test_success():
    msg = parse("success")
    check_common(msg, "Successful Mail Delivery Report")
    b = blocks(msg)
    assert b[0]["Original-Envelope-Id"] == "track-42"
    assert b[1]["Action"] == "delivered"
    assert b[1]["Status"] == "2.0.0"
    assert b[1]["Original-Recipient"] == "rfc822;bob@example.org"
    assert b[1]["Will-Retry-Until"] is None
    assert parts(msg)[2].get_content_type() == "text/rfc822-headers"


def test_hostile():
    msg = parse("hostile")
    check_common(msg, "Undelivered Mail Returned to Sender")
    b = blocks(msg)
    assert len(b) == 2
    r = b[1]
    # the reply's CR LF became blanks: no field was injected anywhere
    for part in [msg] + list(msg.walk()) + b:
        assert part["Injected"] is None and part["X"] is None
    diag = r["Diagnostic-Code"]
    assert diag.startswith("smtp; 550 5.7.1 go away Injected: yes"), diag
    assert "\r" not in diag and "\n" not in diag and "\0" not in diag
    assert all(0x20 <= ord(c) < 0x7f for c in diag), diag
    assert r["Remote-MTA"].startswith("dns; evil.example.net?")
    assert r["Status"] == "5.7.1"
    # ENVID and ORCPT outside printable ASCII: xtext, which decodes back
    envid = b[0]["Original-Envelope-Id"]
    assert re.fullmatch(r"[!-~]+", envid), envid
    assert xtext_decode(envid) == "caf\u00e9+=1"
    typ, _, addr = r["Original-Recipient"].partition(";")
    assert typ == "rfc822"
    assert xtext_decode(addr) == "b\u00f6b+x=y@example.org"
    assert r["Final-Recipient"] == "rfc822;bob@example.org"


def test_utf8_addresses():
    msg = parse("utf8")
    check_common(msg, "Undelivered Mail Returned to Sender", to="j\u00f6rg@b\u00fccher.example")
    p = parts(msg)
    assert len(p) == 2  # no original given
    final = blocks(msg)[1]["Final-Recipient"]
    typ, _, addr = final.partition(";")
    assert typ == "rfc822" and re.fullmatch(r"[!-~]+", addr), final
    assert xtext_decode(addr) == "\u03b5\u03bb\u03ad\u03bd\u03b7@example.org"
    assert p[0].get_content_charset() == "utf-8"
    assert "\u03b5\u03bb\u03ad\u03bd\u03b7@example.org" in p[0].get_content()
    assert probe()["utf8"][1] is True


run([test_every_case_parses, test_wire_form, test_failure_full, test_failure_headers_only,
     test_delay, test_success, test_hostile, test_utf8_addresses])
