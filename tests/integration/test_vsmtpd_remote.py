# SPDX-License-Identifier: MIT
"""vsmtpd with [vsmtpd] policy = grpc://HOST:PORT: every stage asked of a real
vpsd over gRPC (the remote rules decide; vsmtpd's own rule file is not run),
modifications of the remote data stage applied to the queued message, and a
remote vpsd that is down answered with a temporary failure, never a pass."""
import os, time

import taplib
import vsmtpdlib as V

VPSD = os.environ["VPSD"]

REMOTE_RULES = r'''
helo {
  rule "no bots" when helo.name == "bot.test" => reject 550 5.7.1 "remote: no bots"
}
rcpt {
  rule "no bob" when rcpt.local == "bob" => reject 550 5.7.1 "remote: no bob here"
}
data {
  rule "stamp" => add_header "X-Remote-Policy" "seen"
}
'''

# vsmtpd's own rule file would reject alice: it must not run
LOCAL_RULES = 'rcpt {\n  rule "local" when rcpt.local == "alice" => reject 550 5.7.1 "local rules ran"\n}\n'

MESSAGE = "From: a@src.test\r\nTo: alice@dst.test\r\nSubject: remote\r\n\r\nbody\r\n"


def start_vpsd():
    d = taplib.tmpdir()
    port = V.free_port()
    with open(os.path.join(d, "rules.vsl"), "w") as f:
        f.write(REMOTE_RULES)
    with open(os.path.join(d, "vps.conf"), "w") as f:
        f.write("[vpsd]\nrules = rules.vsl\nworkers = 1\n[grpc]\nlisten = 127.0.0.1:%d\n"
                "[log]\nlevel = debug\n" % port)
    p = taplib.spawn([VPSD, "-c", os.path.join(d, "vps.conf")])
    taplib.wait_for_line(p, "ready")
    return p, port


def remote_vsmtpd(port):
    return V.Vsmtpd(rules=LOCAL_RULES,
                    settings={"vsmtpd": {"policy": "grpc://127.0.0.1:%d" % port}}).start()


def test_remote_rules_decide():
    vpsd, port = start_vpsd()
    try:
        with remote_vsmtpd(port) as v:
            c = v.smtp()
            r = c.cmd("HELO bot.test")
            assert r.code == 550 and "remote: no bots" in r.text, r
            assert c.ehlo("client.test").code == 250
            assert c.cmd("MAIL FROM:<a@src.test>").code == 250
            r = c.cmd("RCPT TO:<bob@dst.test>")
            assert r.code == 550 and "remote: no bob here" in r.text, r
            r = c.cmd("RCPT TO:<alice@dst.test>")
            assert r.code == 250, r
            c.close()
    finally:
        vpsd.terminate()
        vpsd.wait(10)


def test_remote_modifications_applied():
    vpsd, port = start_vpsd()
    try:
        with remote_vsmtpd(port) as v:
            reply, qid = v.send_mail("a@src.test", ["alice@dst.test"], MESSAGE)
            assert reply.code == 250 and qid, reply
            msgs = v.wait_maildir("alice@dst.test")
            assert b"X-Remote-Policy: seen" in msgs[0], msgs[0][:400]
            assert b"Subject: remote" in msgs[0]
    finally:
        vpsd.terminate()
        vpsd.wait(10)


def test_remote_down_tempfails():
    port = V.free_port()  # nothing listens there
    with remote_vsmtpd(port) as v:
        c = V.SmtpClient(v.port, greeting=False)
        r = c.reply(timeout=30)
        # the connect stage could not be asked: a temporary refusal, then close
        assert 400 <= r.code < 500, r
        assert c.closed(), "the session must end after a refused connect"
        assert not v.queue_ids()


taplib.run([test_remote_rules_decide, test_remote_modifications_applied,
            test_remote_down_tempfails])
