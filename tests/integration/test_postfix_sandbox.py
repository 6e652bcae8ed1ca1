#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The real-peer harness itself (postfixlib): a sandboxed Postfix relays
swaks mail to smtp-sink, with and without the trivial libmilter milter,
fails closed when the milter is down, holds and reloads, and runs next to
a second instance.  Everything here is a real peer; nothing is mocked."""
import os, sys, uuid

sys.path.insert(0, os.path.dirname(__file__))
from taplib import run, spawn, tmpdir, wait_for_line
from postfixlib import (Postfix, SmtpSink, free_port, swaks, reply_to, mail_reply, rcpt_reply,
                        eod_reply, ehlo_reply, wait_listening, is_listening)

BUILD = os.environ.get("VPS_BUILDDIR", "build")
MILTER = os.environ.get("TRIVIAL_MILTER",
                        os.path.join(BUILD, "tests", "milters", "trivial-milter"))


def sandbox(milter_port=None, **extra):
    """A sink and a Postfix relaying to it, both started."""
    d = tmpdir()
    os.makedirs(os.path.join(d, "sink"))
    sink = SmtpSink(os.path.join(d, "sink")).start()
    main = dict(extra)
    if milter_port is not None:
        main.setdefault("smtpd_milters", f"inet:127.0.0.1:{milter_port}")
        main.setdefault("milter_default_action", "tempfail")
    pf = Postfix(os.path.join(d, "pf"), relay_port=sink.port, main_cf_extra=main).start()
    return sink, pf


def start_milter(*flags):
    port = free_port()
    p = spawn([MILTER, "-v", *flags, "-p", f"inet:{port}@127.0.0.1"], bufsize=0)
    wait_for_line(p, "listening on")
    wait_listening(port)
    return p, port


def stop(*things):
    for t in things:
        if hasattr(t, "stop"):
            t.stop()
        else:
            t.kill()  # libmilter takes 5-15 s to honour SIGTERM; it holds no state
            t.wait()


def send_one(pf, **kw):
    token = uuid.uuid4().hex
    rc, t = swaks(pf.port, from_="alice@example.com", to="bob@example.org",
                  h_Subject=f"t {token}", body=f"body line {token}", **kw)
    return rc, t, token


def test_relay_to_sink():
    sink, pf = sandbox()
    try:
        rc, t, token = send_one(pf)
        assert rc == 0, t
        code, text = eod_reply(t)
        assert code == 250 and "queued as" in text, t
        qid = text.split()[-1]
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        m = msgs[0]
        assert m.mail_from == "alice@example.com", m.mail_args
        assert m.rcpts == ["bob@example.org"], m.rcpt_args
        assert f"body line {token}" in m.body, m.body
        assert m.header("Subject") == f"t {token}", m.headers
        assert f"id {qid}" in m.header("Received"), m.header("Received")
        pf.wait_log(rf"{qid}: to=<bob@example.org>, relay=127.0.0.1\[127.0.0.1\]:{sink.port},.*status=sent")
        pf.wait_queue_empty()
    finally:
        stop(pf, sink)


def test_milter_all_steps():
    milter, mport = start_milter()
    # debug_peer_list makes smtpd log its milter negotiation for this client.
    sink, pf = sandbox(mport, debug_peer_list="127.0.0.1", debug_peer_level="1")
    try:
        rc, t, token = send_one(pf)
        assert rc == 0 and eod_reply(t)[0] == 250, t
        m = sink.wait_messages(1)[0]
        assert f"body line {token}" in m.body
        pf.wait_log(rf"milter8_connect: milter inet:127\.0\.0\.1:{mport} version 6")
        # All steps: no NO_*/NR_* bit asked for, so the list after "events" is empty.
        events = pf.wait_log(r"milter8_connect: events")
        assert events[0].rstrip().endswith("events"), events
        # smtpd sends the envelope events (the content goes from cleanup,
        # which debug_peer_list does not make verbose: the milter's own
        # "eom" line shows that part).
        for step in ("conn", "helo", "mail", "rcpt", "data"):
            pf.wait_log(rf"milter8_{step}_event: milter inet:127\.0\.0\.1:{mport}")
        wait_for_line(milter, "eom")
        assert "warning" not in pf.log(), pf.log()
    finally:
        stop(pf, sink, milter)


def test_milter_data_eom_only():
    milter, mport = start_milter("-e")
    sink, pf = sandbox(mport, debug_peer_list="127.0.0.1", debug_peer_level="1")
    try:
        rc, t, token = send_one(pf)
        assert rc == 0 and eod_reply(t)[0] == 250, t
        assert f"body line {token}" in sink.wait_messages(1)[0].body
        line = pf.wait_log(r"milter8_connect: events")[0]
        asked = set(line.split("events", 1)[1].split())
        for bit in ("SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT",
                    "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NOBODY", "SMFIP_NOUNKNOWN"):
            assert bit in asked, (bit, line)
        assert "SMFIP_NODATA" not in asked and not any("NR_" in b for b in asked), line
        pf.wait_log(r"milter8_data_event")
        wait_for_line(milter, "eom")
    finally:
        stop(pf, sink, milter)


def test_milter_down_tempfails_at_mail():
    milter, mport = start_milter()
    stop(milter)
    assert not is_listening(mport)
    sink, pf = sandbox(mport)
    try:
        rc, t, _ = send_one(pf)
        assert rc != 0, t
        # Postfix cannot refuse the greeting nor EHLO for the milter: it
        # answers them and returns the milter failure at MAIL FROM.
        assert ehlo_reply(t)[0] == 250, t
        code, text = mail_reply(t)
        assert (code, text) == (451, "451 4.7.1 Service unavailable - try again later"), t
        assert rcpt_reply(t) is None and reply_to(t, "DATA") is None, t
        pf.wait_log(rf"warning: connect to Milter service inet:127\.0\.0\.1:{mport}: Connection refused")
        pf.wait_log(r"milter-reject: MAIL from")
        assert sink.messages() == []
    finally:
        stop(pf, sink)


def test_hold_reload_postcat():
    sink, pf = sandbox()
    try:
        rc, t, _ = send_one(pf)
        assert rc == 0 and eod_reply(t)[0] == 250
        sink.wait_messages(1)
        # Policy-style HOLD after a reload: the next message is held, not relayed.
        pf.set_main("smtpd_end_of_data_restrictions", "check_client_access static:HOLD")
        pf.reload()
        assert pf.postconf("smtpd_end_of_data_restrictions") == "check_client_access static:HOLD"
        rc, t, token = send_one(pf)
        assert rc == 0 and eod_reply(t)[0] == 250, t
        qid = eod_reply(t)[1].split()[-1]
        pf.wait_log(rf"{qid}: hold:")
        assert pf.hold_queue() == [qid], pf.hold_queue()
        assert qid in pf.queue_ids()
        assert f"body line {token}" in pf.postcat(qid, "-b")
        pf.wait_queue_empty()  # hold does not count
        assert len(sink.messages()) == 1
    finally:
        stop(pf, sink)


def test_sink_soft_reject_defers():
    d = tmpdir()
    sink = SmtpSink(d, soft_reject=["RCPT"]).start()
    pf = Postfix(os.path.join(d, "pf"), relay_port=sink.port).start()
    try:
        rc, t, _ = send_one(pf)
        assert rc == 0 and eod_reply(t)[0] == 250, t
        qid = eod_reply(t)[1].split()[-1]
        pf.wait_log(rf"{qid}: .*status=deferred .*450 4\.3\.0 Error: command failed")
        assert qid in pf.queue_ids()
        assert sink.messages() == []
    finally:
        stop(pf, sink)


def test_two_instances_at_once():
    a_sink, a = sandbox()
    b_sink, b = sandbox()
    try:
        assert a.port != b.port and a_sink.port != b_sink.port
        assert a.master_pid() != b.master_pid()
        _, ta, tok_a = send_one(a)
        _, tb, tok_b = send_one(b)
        assert eod_reply(ta)[0] == 250 and eod_reply(tb)[0] == 250, (ta, tb)
        ma, mb = a_sink.wait_messages(1), b_sink.wait_messages(1)
        assert len(ma) == 1 and tok_a in ma[0].body, ma
        assert len(mb) == 1 and tok_b in mb[0].body, mb
        # Stopping one leaves the other working.
        a.stop()
        assert not is_listening(a.port)
        _, tb, tok_b = send_one(b)
        assert eod_reply(tb)[0] == 250, tb
        assert tok_b in b_sink.wait_messages(2)[-1].body
    finally:
        stop(a, b, a_sink, b_sink)


run([test_relay_to_sink, test_milter_all_steps, test_milter_data_eom_only,
     test_milter_down_tempfails_at_mail, test_hold_reload_postcat, test_sink_soft_reject_defers,
     test_two_instances_at_once])
