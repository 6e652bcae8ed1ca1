#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `grpc` connector against real peers: a python3-grpcio server written
here (vps.v1.Policy/Check with scripted answers, slow answers, error
statuses, garbage, TLS and mutual TLS), and vpsd chained to vpsd (the rules
of `vpsctl run` and of a vpsd call a grpc connector pointing at a second
vpsd's [grpc] listen).

`vpsctl run` is the driver where one transaction is enough: it runs the
connectors of its configuration like vpsd does.  Session expiry needs a
long-lived process: there a vpsd's own gRPC front end is the driver."""
import concurrent.futures, json, os, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
import test_grpc as T
import test_grpc_tls as TLS
from taplib import run, tmpdir

VPSCTL = T.VPSCTL
MSG = b"From: a@good.test\r\nTo: u@example.org\r\nSubject: lunch\r\n\r\nsee you\r\n"


class Peer:
    """A vps.v1.Policy server: `script(request, context)` answers each Check
    (a CheckResponse, raw bytes, or None after context.abort); every
    request is kept in `checks`, EndSession ids in `ended`."""

    def __init__(self, script=None, tls=None):
        g = T.stubs()["grpc"]
        P = T.stubs()["P"]
        self.checks, self.ended, self.lock = [], [], threading.Lock()
        self.script = script or (lambda req, ctx: reply())

        def check(req, ctx):
            with self.lock:
                self.checks.append(req)
            return self.script(req, ctx)

        def end(req, ctx):
            with self.lock:
                self.ended.append(req.session_id)
            return P.EndSessionResponse(existed=True)

        def ser(m):
            return m if isinstance(m, bytes) else m.SerializeToString()

        handler = g.method_handlers_generic_handler("vps.v1.Policy", {
            "Check": g.unary_unary_rpc_method_handler(
                check, request_deserializer=P.CheckRequest.FromString, response_serializer=ser),
            "EndSession": g.unary_unary_rpc_method_handler(
                end, request_deserializer=P.EndSessionRequest.FromString,
                response_serializer=ser),
        })
        self.server = g.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers((handler,))
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", tls)
        self.server.start()

    def stop(self):
        self.server.stop(0)

    def stages(self):
        return [(T.stage_name(r.stage), r.session_id) for r in self.checks]


def reply(verdict="continue", code=0, enhanced="", text="", mods=(), fields=None, quarantine="",
          rule="", tid="T1"):
    P = T.stubs()["P"]
    sr = P.StageResult(verdict=P.Verdict.Value("VERDICT_" + verdict.upper()), code=code,
                       enhanced=enhanced, text=text, quarantine=quarantine, rule=rule,
                       matched_rules=[rule] if rule else [])
    for conn, fs in (fields or {}).items():
        cr = sr.connector_results.add(connector=conn, verdict=P.VERDICT_CONTINUE)
        for k, v in fs.items():
            f = cr.fields.add(name=k)
            if isinstance(v, bool):
                f.bool_value = v
            elif isinstance(v, int):
                f.int_value = v
            elif isinstance(v, float):
                f.float_value = v
            elif isinstance(v, list):
                f.list_value.values.extend(v)
            else:
                f.string_value = v
    return P.CheckResponse(session_id="x", transaction_id=tid, result=sr,
                           modifications=[P.Modification(**m) for m in mods])


def setup(rules, connector, extra=""):
    d = tmpdir()
    T.write(os.path.join(d, "rules.vsl"), rules)
    T.write(os.path.join(d, "m.eml"), MSG.decode())
    conf = os.path.join(d, "vps.conf")
    T.write(conf, f"""
[vpsd]
rules = rules.vsl
[log]
target = stderr
level = info
[quarantine]
dir = q
names = spam
[connector remote]
type = grpc
{connector}
{extra}
""")
    return d, conf


def vpsctl_run(conf, d, rcpts=("u@example.org",)):
    args = [VPSCTL, "-c", conf, "run", os.path.join(d, "m.eml"), "--json", "--client-ip",
            "192.0.2.10", "--helo", "mx.good.test", "--from", "a@good.test"]
    for r in rcpts:
        args += ["--rcpt", r]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def data_result(rep):
    st = [s for s in rep["stages"] if s["stage"] == "data"][0]
    return st, [r for r in st["results"] if r["connector"] == "remote"][0]


DATA_CALL = 'data { rule "ask" => call remote }\n'


def test_every_verdict():
    for v, code in (("continue", 0), ("accept", 250), ("accept_all", 250), ("reject", 550),
                    ("tempfail", 451), ("discard", 250), ("quarantine", 250)):
        peer = Peer(lambda req, ctx, v=v, code=code: reply(
            v, code=code, text=f"remote says {v}" if code else "",
            quarantine="spam" if v == "quarantine" else ""))
        d, conf = setup(DATA_CALL, f"address = 127.0.0.1:{peer.port}\ntimeout = 5s")
        rep, err = vpsctl_run(conf, d)
        st, res = data_result(rep)
        assert res["verdict"] == v and not res["error"], (v, res, err)
        assert st["verdict"] == v, (v, st)
        if code:
            assert st["code"] == code and st["text"] == f"remote says {v}", st
        if v == "quarantine":
            assert rep["quarantine"] == "spam", rep
        peer.stop()


def test_catch_up_one_session_values_sent():
    """Called only at data, the remote side still sees the session's
    stages in order, under one session id, with the local values."""
    peer = Peer()
    d, conf = setup(DATA_CALL, f"address = 127.0.0.1:{peer.port}")
    rep, err = vpsctl_run(conf, d, rcpts=("u@example.org", "v@example.org"))
    stages = peer.stages()
    assert [s for s, _ in stages] == ["connect", "helo", "mail", "rcpt", "rcpt", "data"], stages
    assert len({sid for _, sid in stages}) == 1, stages
    assert stages[0][1].startswith("vps-"), stages
    c = peer.checks
    assert c[0].client.ip == "192.0.2.10" and c[1].helo == "mx.good.test", c[:2]
    assert c[2].sender.address == "a@good.test" and c[2].reset, c[2]
    assert [c[3].recipient.address, c[4].recipient.address] == ["u@example.org", "v@example.org"]
    assert c[5].message.raw == MSG, c[5].message
    peer.stop()


def test_every_stage_called_no_duplicates():
    peer = Peer()
    rules = ("connect { rule \"a\" => call remote }\nhelo { rule \"b\" => call remote }\n"
             "mail { rule \"c\" => call remote }\nrcpt { rule \"d\" => call remote }\n" + DATA_CALL)
    d, conf = setup(rules, f"address = 127.0.0.1:{peer.port}")
    vpsctl_run(conf, d)
    assert [s for s, _ in peer.stages()] == ["connect", "helo", "mail", "rcpt", "data"], \
        peer.stages()
    peer.stop()


def test_fields_and_modifications():
    """Fields of the reply are NAME.field in the rules; modifications the
    remote transaction gained are applied once, not again at each call."""
    def script(req, ctx):
        mods = [dict(op="add_header", name="X-Remote", value="rcpt", rule="r1")]
        if req.stage == T.stubs()["P"].STAGE_DATA:
            mods += [dict(op="insert_header", name="X-Top", value="1", index=0),
                     dict(op="remove_header", name="X-Junk"),
                     dict(op="quarantine", name="spam")]
        return reply("continue", rule="scored", mods=mods,
                     fields={"": {"score": 7.5, "tags": ["a", "b"], "flag": True},
                             "av": {"name": "Eicar", "hits": 3}})
    peer = Peer(script)
    rules = """rcpt { rule "r" => call remote }
data {
  rule "ask" => call remote
  rule "score" when remote.score > 5.0 and remote.flag => add_header "X-Score" "high"
  rule "av" when remote.av_name == "Eicar" and remote.av_hits == 3 => add_header "X-AV" remote.av_verdict
  rule "rule" when remote.rule == "scored" and "b" in remote.tags => add_header "X-Rule" "seen"
}
"""
    d, conf = setup(rules, f"address = 127.0.0.1:{peer.port}")
    rep, err = vpsctl_run(conf, d)
    mods = [(m["op"], m.get("name"), m.get("value")) for m in rep["modifications"]]
    assert mods.count(("add_header", "X-Remote", "rcpt")) == 1, mods
    assert ("insert_header", "X-Top", "1") in mods and ("remove_header", "X-Junk", None) in mods, mods
    assert ("add_header", "X-Score", "high") in mods, (mods, err)
    assert ("add_header", "X-AV", "continue") in mods, mods
    assert ("add_header", "X-Rule", "seen") in mods, mods
    assert not any(op == "quarantine" for op, _, _ in mods), mods
    st, res = data_result(rep)
    assert res["fields"]["score"] == 7.5 and res["fields"]["av_hits"] == 3, res
    peer.stop()


def on_error_case(script, extra="", expect="reject", address=None):
    peer = Peer(script)
    addr = address or f"127.0.0.1:{peer.port}"
    d, conf = setup(DATA_CALL, f"address = {addr}\ntimeout = 1s\non_error = {expect}\n{extra}")
    t0 = time.time()
    rep, err = vpsctl_run(conf, d)
    st, res = data_result(rep)
    peer.stop()
    assert res["error"] and res["verdict"] == expect, (res, err)
    assert st["verdict"] == expect, st
    return time.time() - t0, err


def test_timeout_is_on_error():
    def slow(req, ctx):
        if req.stage == T.stubs()["P"].STAGE_DATA:
            time.sleep(3)
        return reply()
    took, err = on_error_case(slow)
    assert took < 2.9, took


def test_unavailable_is_on_error():
    took, err = on_error_case(None, address=f"127.0.0.1:{T.free_port()}", expect="tempfail")
    assert "UNAVAILABLE" in err, err


def test_error_status_garbage_and_nonsense_are_on_error():
    g = T.stubs()["grpc"]
    P = T.stubs()["P"]

    def aborts(req, ctx):
        ctx.abort(g.StatusCode.INVALID_ARGUMENT, "no thanks")
    _, err = on_error_case(aborts)
    assert "INVALID_ARGUMENT" in err and "no thanks" in err, err
    _, err = on_error_case(lambda req, ctx: b"\xff\xff\xff\x07garbage")
    assert "CheckResponse" in err, err
    bad = reply("reject")
    bad.result.verdict = 42
    _, err = on_error_case(lambda req, ctx: bad.SerializeToString())
    assert "unknown verdict" in err, err
    _, err = on_error_case(lambda req, ctx: reply(mods=[dict(op="add_header", name="X-A",
                                                             value="a\r\nBcc: x@evil")]))
    assert "modification" in err, err
    _, err = on_error_case(lambda req, ctx: reply(mods=[dict(op="explode")]))
    assert "unknown op" in err, err
    _, err = on_error_case(lambda req, ctx: P.CheckResponse())
    assert "no result" in err, err


def test_lost_remote_session_is_started_again():
    """FAILED_PRECONDITION (the remote side forgot the session) → a new
    session, caught up, once."""
    g = T.stubs()["grpc"]
    seen = set()

    def forgetful(req, ctx):
        if req.stage == T.stubs()["P"].STAGE_DATA and not seen:
            seen.add(req.session_id)
            ctx.abort(g.StatusCode.FAILED_PRECONDITION, "unknown session")
        return reply("reject", code=550, text="second try")
    peer = Peer(forgetful)
    d, conf = setup(DATA_CALL, f"address = 127.0.0.1:{peer.port}")
    rep, err = vpsctl_run(conf, d)
    st, res = data_result(rep)
    assert res["verdict"] == "reject" and not res["error"], (res, err)
    ids = [sid for _, sid in peer.stages()]
    assert len(set(ids)) == 2 and [s for s, _ in peer.stages()][-5:] == \
        ["connect", "helo", "mail", "rcpt", "data"], peer.stages()
    peer.stop()


def test_tls_and_mutual_tls():
    g = T.stubs()["grpc"]
    c = TLS.certs()
    key, cert, ca = TLS.read(c, "server.key"), TLS.read(c, "server.pem"), TLS.read(c, "ca.pem")
    creds = g.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                      require_client_auth=True)
    peer = Peer(lambda req, ctx: reply("reject", code=550, text="over tls"), tls=creds)
    mtls = f"tls = true\ntls_ca = {c}/ca.pem\ntls_cert = {c}/client.pem\ntls_key = {c}/client.key\n"
    for address, extra in ((f"localhost:{peer.port}", ""),
                           (f"127.0.0.1:{peer.port}", "tls_server_name = localhost\n")):
        d, conf = setup(DATA_CALL, f"address = {address}\n{mtls}{extra}")
        rep, err = vpsctl_run(conf, d)
        st, res = data_result(rep)
        assert res["verdict"] == "reject" and res["text"] == "over tls", (res, err)
    # no client certificate, or a CA that did not sign the server's: on_error
    for bad in (f"tls = true\ntls_ca = {c}/ca.pem\n",
                f"tls = true\ntls_ca = {c}/stranger.pem\ntls_cert = {c}/client.pem\n"
                f"tls_key = {c}/client.key\n"):
        d, conf = setup(DATA_CALL, f"address = localhost:{peer.port}\ntimeout = 2s\n{bad}")
        rep, err = vpsctl_run(conf, d)
        st, res = data_result(rep)
        assert res["error"] and res["verdict"] == "tempfail", (res, err)
    peer.stop()


def test_config_errors():
    for conn, want in (("", "address"), ("address = nope", "address"),
                       ("address = 127.0.0.1:1\ntls_ca = x.pem", "needs tls = true"),
                       ("address = 127.0.0.1:1\ntls = true\ntls_cert = c.pem", "go together"),
                       ("address = 127.0.0.1:1\ntls = true\ntls_ca = missing.pem", "tls_ca"),
                       ("address = 127.0.0.1:1\nbogus = 1", "bogus")):
        d, conf = setup(DATA_CALL, conn)
        p = subprocess.run([T.VPSD, "-c", conf, "--check"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1 and want in p.stderr and "[connector remote]" in p.stderr, \
            (conn, p.stderr)


def test_vpsd_chained_to_vpsd():
    """vpsctl run's rules call a grpc connector on a second vpsd: its
    verdicts, replies and modifications come back; its own stages see the
    envelope through the catch-up."""
    v2 = T.Vpsd(rules=T.RULES + 'rcpt { rule "tag" => add_header "X-Rcpt-Seen" rcpt.to }\n')
    rules = ('rcpt { rule "ask" => call remote }\n'
             'data { rule "ask" => call remote\n'
             '  rule "via" when remote.rule != "" => add_header "X-Via" remote.rule }\n')
    d, conf = setup(rules, f"address = 127.0.0.1:{v2.port}\ntimeout = 5s")
    rep, err = vpsctl_run(conf, d)
    assert rep["verdict"] != "reject", rep
    mods = [(m["op"], m.get("name"), m.get("value")) for m in rep["modifications"]]
    assert ("add_header", "X-Scanned-By", "vps") in mods, (mods, err)
    assert mods.count(("add_header", "X-Rcpt-Seen", "u@example.org")) == 1, mods
    # the second vpsd's rejection of a relay attempt at rcpt becomes ours
    rep, err = vpsctl_run(conf, d, rcpts=("x@elsewhere.test",))
    st = [s for s in rep["stages"] if s["stage"] == "rcpt"][0]
    assert st["verdict"] == "reject" and st["text"] == "relay denied", st
    # spam is refused over there at data
    T.write(os.path.join(d, "m.eml"), T.MSG_SPAM.decode())
    rep, err = vpsctl_run(conf, d)
    assert rep["verdict"] == "reject" and rep["text"] == "Spam" and rep["stage"] == "data", rep
    assert v2.stop() == 0


def test_vpsd_chain_and_end_session():
    """A long-lived vpsd (driven over its own gRPC front end) calls the
    peer; a local session idle for session_timeout is ended there, and so
    is one that ends (EndSession to the first vpsd frees it)."""
    P = T.stubs()["P"]
    peer = Peer(lambda req, ctx: reply("continue", mods=[dict(op="add_header", name="X-P",
                                                              value="1")]))
    v1 = T.Vpsd(rules='mail { rule "ask" => call remote }\n',
                extra=f"[connector remote]\ntype = grpc\naddress = 127.0.0.1:{peer.port}\n"
                      "session_timeout = 1s\n")
    for sid in ("s1", "s2"):
        T.check(v1, session_id=sid, stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1"))
        r = T.check(v1, session_id=sid, stage=P.STAGE_MAIL, sender=P.Address(address="a@b.test"))
        assert [m.name for m in r.modifications] == ["X-P"], r
        if sid == "s1":
            time.sleep(2.5)
    first = peer.checks[0].session_id
    deadline = time.time() + 5
    while first not in peer.ended and time.time() < deadline:
        time.sleep(0.1)
    assert peer.ended == [first], (peer.ended, peer.stages())
    assert len({sid for _, sid in peer.stages()}) == 2, peer.stages()
    second = peer.checks[-1].session_id
    r = T.unary(v1.channel, "/vps.v1.Policy/EndSession", P.EndSessionRequest(session_id="s2"),
                P.EndSessionResponse)
    assert r.existed, r
    deadline = time.time() + 5
    while second not in peer.ended and time.time() < deadline:
        time.sleep(0.1)
    assert peer.ended == [first, second], (peer.ended, second)
    assert v1.stop() == 0
    peer.stop()


if __name__ == "__main__":
    run([test_every_verdict, test_catch_up_one_session_values_sent,
         test_every_stage_called_no_duplicates, test_fields_and_modifications,
         test_timeout_is_on_error, test_unavailable_is_on_error,
         test_error_status_garbage_and_nonsense_are_on_error,
         test_lost_remote_session_is_started_again, test_tls_and_mutual_tls, test_config_errors,
         test_vpsd_chained_to_vpsd, test_vpsd_chain_and_end_session])
