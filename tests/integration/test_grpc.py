#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsd's gRPC API against python3-grpcio, an independent client: every
method, every status code, health, reflection, Check transactions against
`vpsctl run`, Evaluate, the admin service, hostile input, many calls in
flight, the drain, and the example client of docs/grpc.md.

Stubs are generated at test time with protoc --python_out (grpc_tools is
not packaged in Debian 12); calls go through channel.unary_unary with the
method path, as grpcio supports without generated service code.
Helpers here are also used by test_grpc_tls.py."""
import concurrent.futures, json, os, re, signal, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(__file__))
import taplib
from taplib import run, tmpdir

VPSD = os.environ.get("VPSD", "")
VPSCTL = os.environ.get("VPSCTL", "")
SRC = os.environ.get("VPS_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))

_stubs = None


def stubs():
    """Generate the vps.v1 Python modules once into a temp dir; import them."""
    global _stubs
    if _stubs is None:
        out = tmpdir()
        protos = ["vps/v1/policy.proto", "vps/v1/admin.proto", "vps/v1/health.proto",
                  "vps/v1/reflection_v1alpha.proto", "vps/v1/reflection_v1.proto"]
        subprocess.run(["protoc", "--proto_path=" + os.path.join(SRC, "proto"),
                        "--python_out=" + out, *protos], check=True)
        sys.path.insert(0, out)
        # the client library's own handshake errors would break TAP lines
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        import grpc
        from vps.v1 import policy_pb2, admin_pb2, health_pb2, reflection_v1alpha_pb2
        from vps.v1 import reflection_v1_pb2
        _stubs = dict(grpc=grpc, P=policy_pb2, A=admin_pb2, H=health_pb2,
                      R=reflection_v1alpha_pb2, R1=reflection_v1_pb2)
    return _stubs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


RULES = """
connect { rule "bad net" when client.ip == 192.0.2.66 => reject 554 5.7.1 "go away" }
helo { rule "helo liar" when helo.name == "evil.example" => reject 550 5.7.1 "That is my name" }
mail { rule "bad sender" when mail.from.domain == "spammer.test" => reject 550 5.7.1 "Sender refused" }
rcpt {
  rule "slow" when rcpt.local == "slow" => call slowpoke
  rule "no relay" when rcpt.domain != "example.org" => reject 554 5.7.1 "relay denied"
}
data {
  rule "spam" when subject =~ /viagra/i => reject 550 5.7.1 "Spam"
  rule "hold" when subject =~ /hold me/i => quarantine "spam"
  rule "stamp" => add_header "X-Scanned-By" "vps"
}
"""


class Vpsd:
    """A vpsd with [grpc] listen and admin_listen on free ports."""

    def __init__(self, rules=RULES, grpc_extra="", extra="", admin=True):
        self.dir = tmpdir()
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        write(os.path.join(self.dir, "rules.vsl"), rules)
        admin_line = f"admin_listen = 127.0.0.1:{self.admin_port}\n" if admin else ""
        self.conf = os.path.join(self.dir, "vps.conf")
        write(self.conf, f"""
[vpsd]
rules = rules.vsl
workers = 2
drain_timeout = 5s
[log]
target = stderr
level = info
[quarantine]
dir = q
names = spam
[connector slowpoke]
type = test
delay = 3s
timeout = 10s
[grpc]
listen = 127.0.0.1:{self.port}
{admin_line}{grpc_extra}
{extra}
""")
        # vpsd logs to a file: an unread pipe would fill up and block it
        self.log = os.path.join(self.dir, "vpsd.log")
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([VPSD, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        taplib._procs.append(self.proc)
        self.wait_log("ready", timeout=20)
        g = stubs()["grpc"]
        self.channel = g.insecure_channel(f"127.0.0.1:{self.port}")
        self.admin = g.insecure_channel(f"127.0.0.1:{self.admin_port}") if admin else None

    def wait_log(self, needle, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log, errors="replace") as f:
                if needle in f.read():
                    return
            if self.proc.poll() is not None and needle != "exit":
                break
            time.sleep(0.05)
        with open(self.log, errors="replace") as f:
            raise AssertionError(f"no {needle!r} in the log: {f.read()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.proc.returncode


def unary(channel, method, request, response_cls, timeout=10, raw=False):
    """One unary call; `raw` sends request as the given bytes."""
    fn = channel.unary_unary(
        method,
        request_serializer=(lambda b: b) if raw else (lambda m: m.SerializeToString()),
        response_deserializer=response_cls.FromString)
    return fn(request, timeout=timeout)


def status_of(fn):
    """Run fn; return (code name, details) of the RpcError it raises."""
    g = stubs()["grpc"]
    try:
        fn()
    except g.RpcError as e:
        return e.code().name, e.details()
    raise AssertionError("the call succeeded")


def check(v, _timeout=10, **kw):
    s = stubs()
    return unary(v.channel, "/vps.v1.Policy/Check", s["P"].CheckRequest(**kw),
                 s["P"].CheckResponse, timeout=_timeout)


def admin_call(v, name, req, resp):
    return unary(v.admin, "/vps.v1.Admin/" + name, req, resp)


def verdict_name(n):
    return stubs()["P"].Verdict.Name(n).replace("VERDICT_", "").lower()


def stage_name(n):
    return stubs()["P"].Stage.Name(n).replace("STAGE_", "").lower()


MSG_SPAM = b"From: a@good.test\r\nTo: u@example.org\r\nSubject: cheap viagra\r\n\r\nbuy\r\n"
MSG_HAM = b"From: a@good.test\r\nTo: u@example.org\r\nSubject: lunch\r\n\r\nsee you\r\n"
MSG_HOLD = b"From: a@good.test\r\nTo: u@example.org\r\nSubject: hold me please\r\n\r\nx\r\n"


def transaction(v, sid, client_ip, helo, sender, rcpts, message):
    """Drive one transaction through Check as an MTA would; the stages
    run with their verdicts, as `vpsctl run --json` reports them."""
    P = stubs()["P"]
    out = []
    steps = [dict(stage=P.STAGE_CONNECT, client=P.Client(ip=client_ip)),
             dict(stage=P.STAGE_HELO, helo=helo),
             dict(stage=P.STAGE_MAIL, sender=P.Address(address=sender))]
    for st in steps:
        r = check(v, session_id=sid, **st).result
        out.append((stage_name(r.stage), verdict_name(r.verdict), r.code))
        if r.verdict in (P.VERDICT_REJECT, P.VERDICT_TEMPFAIL, P.VERDICT_DISCARD):
            return out
    accepted = 0
    for rc in rcpts:
        r = check(v, session_id=sid, stage=P.STAGE_RCPT, recipient=P.Address(address=rc)).result
        out.append((stage_name(r.stage), verdict_name(r.verdict), r.code))
        if r.verdict not in (P.VERDICT_REJECT, P.VERDICT_TEMPFAIL):
            accepted += 1
    if accepted == 0:
        return out
    resp = check(v, session_id=sid, stage=P.STAGE_DATA, message=P.Message(raw=message))
    r = resp.result
    out.append((stage_name(r.stage), verdict_name(r.verdict), r.code))
    return out


def vpsctl_stages(v, msgfile, client_ip, helo, sender, rcpts):
    args = [VPSCTL, "-c", v.conf, "run", msgfile, "--json", "--client-ip", client_ip,
            "--helo", helo, "--from", sender]
    for r in rcpts:
        args += ["--rcpt", r]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1, 2, 3), p.stderr
    rep = json.loads(p.stdout)
    # vpsctl goes on to postq/delivery; Check transactions stop at data
    return [(s["stage"], s["verdict"], s["code"]) for s in rep["stages"]
            if s["stage"] not in ("postq", "delivery")], rep


# ---- tests -----------------------------------------------------------------

def test_health():
    s = stubs()
    v = Vpsd()
    H = s["H"]
    r = unary(v.channel, "/grpc.health.v1.Health/Check", H.HealthCheckRequest(),
              H.HealthCheckResponse)
    assert r.status == H.HealthCheckResponse.SERVING
    r = unary(v.channel, "/grpc.health.v1.Health/Check",
              H.HealthCheckRequest(service="vps.v1.Policy"), H.HealthCheckResponse)
    assert r.status == H.HealthCheckResponse.SERVING
    code, _ = status_of(lambda: unary(v.channel, "/grpc.health.v1.Health/Check",
                                      H.HealthCheckRequest(service="no.such.Service"),
                                      H.HealthCheckResponse))
    assert code == "NOT_FOUND", code
    code, _ = status_of(lambda: unary(v.channel, "/grpc.health.v1.Health/Watch",
                                      H.HealthCheckRequest(), H.HealthCheckResponse))
    assert code == "UNIMPLEMENTED", code
    assert v.stop() == 0


def reflect(channel, R, requests, version="v1alpha"):
    fn = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=R.ServerReflectionResponse.FromString)
    return list(fn(iter(requests), timeout=10))


def test_reflection_lists_services_and_describes_them():
    """As grpcurl does: list, fetch descriptors by symbol, build the
    messages from them alone and make a call with those."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    s = stubs()
    v = Vpsd()
    for version, R in (("v1alpha", s["R"]), ("v1", s["R1"])):
        rs = reflect(v.channel, R, [R.ServerReflectionRequest(list_services=""),
                                    R.ServerReflectionRequest(file_containing_symbol="vps.v1.Policy"),
                                    R.ServerReflectionRequest(file_containing_symbol="no.Such"),
                                    R.ServerReflectionRequest(file_by_filename="vps/v1/admin.proto")],
                     version)
        assert len(rs) == 4, rs
        names = {x.name for x in rs[0].list_services_response.service}
        for want in ("vps.v1.Policy", "vps.v1.Admin", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection"):
            assert want in names, (want, names)
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in rs[1].file_descriptor_response.file_descriptor_proto]
        assert files[0].name == "vps/v1/policy.proto", [f.name for f in files]
        assert rs[2].error_response.error_code == 5, rs[2]
        admin_files = [descriptor_pb2.FileDescriptorProto.FromString(b).name
                       for b in rs[3].file_descriptor_response.file_descriptor_proto]
        # admin.proto first, then what it imports
        assert admin_files == ["vps/v1/admin.proto", "vps/v1/policy.proto"], admin_files
    # a dynamic call built only from the reflected descriptors
    pool = descriptor_pool.DescriptorPool()
    for f in files:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    req_cls = factory.GetPrototype(pool.FindMessageTypeByName("vps.v1.CheckRequest"))
    resp_cls = factory.GetPrototype(pool.FindMessageTypeByName("vps.v1.CheckResponse"))
    method = pool.FindServiceByName("vps.v1.Policy").FindMethodByName("Check")
    assert method.input_type.full_name == "vps.v1.CheckRequest"
    req = req_cls(session_id="dyn", stage=1)
    req.client.ip = "192.0.2.66"
    r = unary(v.channel, "/vps.v1.Policy/Check", req, resp_cls)
    assert r.result.verdict == 6 and r.result.code == 554, r  # reject
    assert v.stop() == 0


def test_check_transactions_match_vpsctl_run():
    v = Vpsd()
    d = v.dir
    cases = [
        ("192.0.2.66", "mx.good.test", "a@good.test", ["u@example.org"], MSG_HAM),
        ("192.0.2.1", "evil.example", "a@good.test", ["u@example.org"], MSG_HAM),
        ("192.0.2.1", "mx.good.test", "x@spammer.test", ["u@example.org"], MSG_HAM),
        ("192.0.2.1", "mx.good.test", "a@good.test", ["u@example.org", "v@elsewhere.test"], MSG_SPAM),
        ("192.0.2.1", "mx.good.test", "a@good.test", ["v@elsewhere.test"], MSG_HAM),
        ("192.0.2.1", "mx.good.test", "a@good.test", ["u@example.org"], MSG_HAM),
        ("2001:db8::1", "mx.good.test", "", ["u@example.org"], MSG_HOLD),
    ]
    finals = [("connect", "reject"), ("helo", "reject"), ("mail", "reject"), ("data", "reject"),
              ("rcpt", "reject"), ("data", "continue"), ("data", "quarantine")]
    for i, (ip, helo, sender, rcpts, msg) in enumerate(cases):
        path = os.path.join(d, f"m{i}.eml")
        with open(path, "wb") as f:
            f.write(msg)
        got = transaction(v, f"case-{i}", ip, helo, sender, rcpts, msg)
        want, _ = vpsctl_stages(v, path, ip, helo, sender, rcpts)
        assert got == want, (i, got, want)
        # and both agree with what RULES says, not only with each other
        assert got[-1][:2] == finals[i], (i, got)
    assert v.stop() == 0


def test_check_reply_fields_and_modifications():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    sid = "fields-1"
    check(v, session_id=sid, stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1", port=4242))
    check(v, session_id=sid, stage=P.STAGE_MAIL, sender=P.Address(address="a@good.test",
                                                                   params=["SIZE=100"]))
    r = check(v, session_id=sid, stage=P.STAGE_RCPT, recipient=P.Address(address="u@example.org"))
    assert r.result.verdict == P.VERDICT_CONTINUE and r.session_id == sid
    hdrs = [P.Header(name="From", value="a@good.test"), P.Header(name="Subject", value="hello")]
    r = check(v, session_id=sid, stage=P.STAGE_DATA,
              message=P.Message(parsed=P.ParsedMessage(headers=hdrs, body=b"hi\r\n")))
    assert r.result.stage == P.STAGE_DATA and r.result.verdict == P.VERDICT_CONTINUE, r
    mods = [(m.op, m.name, m.value) for m in r.modifications]
    assert ("add_header", "X-Scanned-By", "vps") in mods, mods
    assert "stamp" in r.result.matched_rules
    # a connector's result comes back with its fields
    r = check(v, session_id=sid, stage=P.STAGE_RCPT, reset=False,
              recipient=P.Address(address="slow@example.org"), _timeout=20)
    assert [c.connector for c in r.result.connector_results] == ["slowpoke"], r
    fields = {f.name: f for f in r.result.connector_results[0].fields}
    assert fields["calls"].int_value == 1, fields
    # EndSession forgets it: a rcpt now has no MAIL before it
    e = unary(v.channel, "/vps.v1.Policy/EndSession", P.EndSessionRequest(session_id=sid),
              P.EndSessionResponse)
    assert e.existed
    e = unary(v.channel, "/vps.v1.Policy/EndSession", P.EndSessionRequest(session_id=sid),
              P.EndSessionResponse)
    assert not e.existed
    code, det = status_of(lambda: check(v, session_id=sid, stage=P.STAGE_RCPT,
                                        recipient=P.Address(address="u@example.org")))
    assert code == "FAILED_PRECONDITION" and "rcpt before mail" in det, (code, det)
    assert v.stop() == 0


def test_evaluate_matches_vpsctl_run():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    for i, msg in enumerate([MSG_SPAM, MSG_HAM, MSG_HOLD]):
        path = os.path.join(v.dir, f"e{i}.eml")
        with open(path, "wb") as f:
            f.write(msg)
        r = unary(v.channel, "/vps.v1.Policy/Evaluate",
                  P.EvaluateRequest(message=msg, client_ip="192.0.2.1", helo="mx.good.test"),
                  P.EvaluateResponse)
        p = subprocess.run([VPSCTL, "-c", v.conf, "run", path, "--json", "--client-ip",
                            "192.0.2.1", "--helo", "mx.good.test"],
                           capture_output=True, text=True, timeout=60)
        want = json.loads(p.stdout)
        assert verdict_name(r.verdict) == want["verdict"], (r, want)
        assert stage_name(r.stage) == want["stage"] and r.code == want["code"], (r, want)
        assert [(stage_name(x.stage), verdict_name(x.verdict)) for x in r.stages] == \
            [(x["stage"], x["verdict"]) for x in want["stages"]]
        got = json.loads(r.report_json)
        assert got["verdict"] == want["verdict"] and got["stages"] == want["stages"]
    assert v.stop() == 0


def test_invalid_arguments():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    bad = [
        dict(stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1")),      # no session id
        dict(session_id="x", client=P.Client(ip="192.0.2.1")),            # no stage
        dict(session_id="x", stage=P.STAGE_CONNECT),                      # no client
        dict(session_id="x", stage=P.STAGE_CONNECT, client=P.Client(ip="not-an-ip")),
        dict(session_id="x", stage=P.STAGE_HELO, helo="a\r\nRCPT TO:<x>"),
        dict(session_id="x", stage=P.STAGE_MAIL),
        dict(session_id="x", stage=P.STAGE_MAIL, sender=P.Address(address="a" * 300)),
        dict(session_id="x", stage=P.STAGE_DATA),
        dict(session_id="x", stage=P.STAGE_DATA, message=P.Message(parsed=P.ParsedMessage(
            headers=[P.Header(name="X-A", value="v\r\nBcc: victim@x")]))),
        dict(session_id="bad id with spaces", stage=P.STAGE_HELO, helo="h"),
    ]
    for kw in bad:
        code, det = status_of(lambda: check(v, **kw))
        assert code == "INVALID_ARGUMENT", (kw, code, det)
    # raw bytes: an unknown enum value, and garbage that is no protobuf
    for raw in (b"\x0a\x01s\x10\x63", b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f"):
        code, det = status_of(lambda: unary(v.channel, "/vps.v1.Policy/Check", raw,
                                            P.CheckResponse, raw=True))
        assert code == "INVALID_ARGUMENT", (raw, code, det)
    code, _ = status_of(lambda: unary(v.channel, "/vps.v1.Policy/Evaluate",
                                      P.EvaluateRequest(), P.EvaluateResponse))
    assert code == "INVALID_ARGUMENT"
    code, _ = status_of(lambda: unary(v.channel, "/vps.v1.Policy/NoSuchMethod",
                                      P.CheckRequest(), P.CheckResponse))
    assert code == "UNIMPLEMENTED"
    code, _ = status_of(lambda: unary(v.channel, "/no.Such/Thing", b"", P.CheckResponse, raw=True))
    assert code == "UNIMPLEMENTED"
    # still serving
    r = check(v, session_id="after", stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1"))
    assert r.result.verdict == P.VERDICT_CONTINUE
    assert v.stop() == 0


def test_deadline_exceeded_and_session_busy():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    sid = "slow-1"
    check(v, session_id=sid, stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1"))
    check(v, session_id=sid, stage=P.STAGE_MAIL, sender=P.Address(address="a@good.test"))
    t0 = time.time()
    code, _ = status_of(lambda: unary(
        v.channel, "/vps.v1.Policy/Check",
        P.CheckRequest(session_id=sid, stage=P.STAGE_RCPT,
                       recipient=P.Address(address="slow@example.org")),
        P.CheckResponse, timeout=0.5))
    assert code == "DEADLINE_EXCEEDED" and time.time() - t0 < 2.5, code
    # vpsd cancelled the stage at the deadline: the session is free again
    v.wait_log("DEADLINE_EXCEEDED", timeout=5)
    r = check(v, session_id=sid, stage=P.STAGE_RCPT, recipient=P.Address(address="u@example.org"))
    assert r.result.verdict == P.VERDICT_CONTINUE
    # two calls of one session at once: the second is ABORTED
    slow = v.channel.unary_unary("/vps.v1.Policy/Check",
                                 request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=P.CheckResponse.FromString).future(
        P.CheckRequest(session_id=sid, stage=P.STAGE_RCPT,
                       recipient=P.Address(address="slow@example.org")), timeout=20)
    time.sleep(0.5)
    code, _ = status_of(lambda: check(v, session_id=sid, stage=P.STAGE_RCPT,
                                      recipient=P.Address(address="u@example.org")))
    assert code == "ABORTED", code
    assert slow.result().result.verdict == P.VERDICT_CONTINUE
    assert v.stop() == 0


def test_oversized_message_refused():
    s = stubs()
    P = s["P"]
    v = Vpsd(grpc_extra="max_message_size = 64K\n")
    big = MSG_HAM + b"x" * 100000 + b"\r\n"
    code, _ = status_of(lambda: unary(v.channel, "/vps.v1.Policy/Evaluate",
                                      P.EvaluateRequest(message=big), P.EvaluateResponse))
    assert code == "RESOURCE_EXHAUSTED", code
    r = unary(v.channel, "/vps.v1.Policy/Evaluate", P.EvaluateRequest(message=MSG_SPAM),
              P.EvaluateResponse)
    assert r.verdict == P.VERDICT_REJECT
    assert v.stop() == 0


def test_many_calls_in_flight():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    fn = v.channel.unary_unary("/vps.v1.Policy/Check",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=P.CheckResponse.FromString)
    futs = []
    for i in range(400):
        ip = "192.0.2.66" if i % 2 else "192.0.2.1"
        futs.append((i, fn.future(P.CheckRequest(session_id=f"many-{i}", stage=P.STAGE_CONNECT,
                                                 client=P.Client(ip=ip)), timeout=30)))
    for i, f in futs:
        want = P.VERDICT_REJECT if i % 2 else P.VERDICT_CONTINUE
        assert f.result().result.verdict == want, i
    st = admin_call(v, "Stats", s["A"].StatsRequest(), s["A"].StatsResponse)
    assert st.sessions == 400, st.sessions
    counts = {(stage_name(c.stage), verdict_name(c.verdict)): c.count for c in st.stages}
    assert counts[("connect", "reject")] == 200 and counts[("connect", "continue")] == 200, counts
    m = {x.method: x for x in st.methods}
    assert m["/vps.v1.Policy/Check"].calls == 400 and m["/vps.v1.Policy/Check"].errors == 0
    assert m["/vps.v1.Policy/Check"].max_us > 0
    assert v.stop() == 0


def test_admin_reload_stats_quarantine():
    s = stubs()
    P, A = s["P"], s["A"]
    v = Vpsd()
    # Admin is refused on the Policy listener
    code, _ = status_of(lambda: unary(v.channel, "/vps.v1.Admin/Stats", A.StatsRequest(),
                                      A.StatsResponse))
    assert code == "PERMISSION_DENIED", code
    st = admin_call(v, "Stats", A.StatsRequest(), A.StatsResponse)
    assert st.generation == 1
    assert [c.name for c in st.connectors] == ["slowpoke"]
    # reload with a broken rule file: refused, the old rules stay
    rules = os.path.join(v.dir, "rules.vsl")
    write(rules, RULES + "\nconnect { rule \"x\" when helo.name == \"a\" => accept }\n")
    code, det = status_of(lambda: admin_call(v, "Reload", A.ReloadRequest(), A.ReloadResponse))
    assert code == "FAILED_PRECONDITION" and "rules.vsl:" in det, (code, det)
    assert admin_call(v, "Stats", A.StatsRequest(), A.StatsResponse).generation == 1
    r = unary(v.channel, "/vps.v1.Policy/Evaluate", P.EvaluateRequest(message=MSG_SPAM),
              P.EvaluateResponse)
    assert r.verdict == P.VERDICT_REJECT
    # a good one: generation 2, new rules in force
    write(rules, RULES.replace("viagra", "cialis"))
    assert admin_call(v, "Reload", A.ReloadRequest(), A.ReloadResponse).generation == 2
    r = unary(v.channel, "/vps.v1.Policy/Evaluate", P.EvaluateRequest(message=MSG_SPAM),
              P.EvaluateResponse)
    assert r.verdict == P.VERDICT_ACCEPT, r.verdict
    # quarantine: Evaluate with apply stores it
    r = unary(v.channel, "/vps.v1.Policy/Evaluate", P.EvaluateRequest(message=MSG_HOLD, apply=True),
              P.EvaluateResponse)
    assert r.verdict == P.VERDICT_QUARANTINE and r.quarantine == "spam" and r.quarantine_id, r
    qid = r.quarantine_id
    lst = admin_call(v, "ListQuarantine", A.ListQuarantineRequest(), A.ListQuarantineResponse)
    assert [e.id for e in lst.entries] == [qid], lst
    assert lst.entries[0].name == "spam" and lst.entries[0].subject == "hold me please"
    assert lst.entries[0].rule == "hold", lst.entries[0]
    got = admin_call(v, "GetQuarantined", A.GetQuarantinedRequest(id=qid), A.GetQuarantinedResponse)
    assert got.raw == MSG_HOLD
    got = admin_call(v, "GetQuarantined",
                     A.GetQuarantinedRequest(id=qid, format=A.QUARANTINE_FORMAT_JSON),
                     A.GetQuarantinedResponse)
    assert json.loads(got.json)["id"] == qid
    code, det = status_of(lambda: admin_call(v, "ReleaseQuarantined",
                                             A.ReleaseQuarantinedRequest(id=qid),
                                             A.ReleaseQuarantinedResponse))
    assert code == "FAILED_PRECONDITION" and "release_to" in det, (code, det)
    for bad in ("../../etc/passwd", ""):
        code, _ = status_of(lambda: admin_call(v, "GetQuarantined", A.GetQuarantinedRequest(id=bad),
                                               A.GetQuarantinedResponse))
        assert code == "INVALID_ARGUMENT", code
    code, _ = status_of(lambda: admin_call(v, "GetQuarantined", A.GetQuarantinedRequest(
        id="20200101T000000Z-0123456789ab"), A.GetQuarantinedResponse))
    assert code == "NOT_FOUND", code
    code, _ = status_of(lambda: unary(v.admin, "/vps.v1.Admin/GetQuarantined",
                                      b"\x10\x07", A.GetQuarantinedResponse, raw=True))
    assert code == "INVALID_ARGUMENT", code  # unknown format enum value
    admin_call(v, "DeleteQuarantined", A.DeleteQuarantinedRequest(id=qid),
               A.DeleteQuarantinedResponse)
    lst = admin_call(v, "ListQuarantine", A.ListQuarantineRequest(), A.ListQuarantineResponse)
    assert len(lst.entries) == 0
    code, _ = status_of(lambda: admin_call(v, "DeleteQuarantined",
                                           A.DeleteQuarantinedRequest(id=qid),
                                           A.DeleteQuarantinedResponse))
    assert code == "NOT_FOUND", code
    # with release_to configured vpsd sends over SMTP; nobody listens there:
    # UNAVAILABLE, and the message stays (test_quarantine_release.py
    # releases to a real smtp-sink)
    r = unary(v.channel, "/vps.v1.Policy/Evaluate", P.EvaluateRequest(message=MSG_HOLD, apply=True),
              P.EvaluateResponse)
    conf = open(v.conf).read().replace("names = spam",
                                       f"names = spam\nrelease_to = [127.0.0.1]:{free_port()}")
    write(v.conf, conf)
    assert admin_call(v, "Reload", A.ReloadRequest(), A.ReloadResponse).generation == 3
    code, det = status_of(lambda: admin_call(v, "ReleaseQuarantined",
                                             A.ReleaseQuarantinedRequest(id=r.quarantine_id),
                                             A.ReleaseQuarantinedResponse))
    assert code == "UNAVAILABLE" and "connect to" in det, (code, det)
    got = admin_call(v, "GetQuarantined", A.GetQuarantinedRequest(id=r.quarantine_id),
                     A.GetQuarantinedResponse)
    assert got.raw == MSG_HOLD
    assert v.stop() == 0


def test_drain_finishes_calls_in_flight():
    s = stubs()
    P = s["P"]
    v = Vpsd()
    sid = "drain-1"
    check(v, session_id=sid, stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1"))
    check(v, session_id=sid, stage=P.STAGE_MAIL, sender=P.Address(address="a@good.test"))
    fn = v.channel.unary_unary("/vps.v1.Policy/Check",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=P.CheckResponse.FromString)
    slow = fn.future(P.CheckRequest(session_id=sid, stage=P.STAGE_RCPT,
                                    recipient=P.Address(address="slow@example.org")), timeout=20)
    time.sleep(0.5)
    v.proc.send_signal(signal.SIGTERM)
    v.wait_log("grpc: draining", timeout=5)
    # a new call is not accepted any more
    g = s["grpc"]
    fresh = g.insecure_channel(f"127.0.0.1:{v.port}")
    code, _ = status_of(lambda: unary(fresh, "/vps.v1.Policy/Check", P.CheckRequest(
        session_id="late", stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.1")),
        P.CheckResponse, timeout=3))
    assert code in ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"), code
    assert slow.result().result.verdict == P.VERDICT_CONTINUE
    assert v.proc.wait(timeout=30) == 0


def test_docs_example_client():
    """The Python example of docs/grpc.md, run as written."""
    v = Vpsd()
    doc = open(os.path.join(SRC, "docs", "grpc.md")).read()
    m = re.search(r"<!-- example-client -->\s*```python\n(.*?)```", doc, re.S)
    assert m, "no example client in docs/grpc.md"
    d = tmpdir()
    path = os.path.join(d, "client.py")
    write(path, m.group(1))
    stubs_dir = [p for p in sys.path if os.path.isdir(os.path.join(p, "vps", "v1"))][0]
    env = dict(os.environ, PYTHONPATH=stubs_dir, VPSD_GRPC=f"127.0.0.1:{v.port}")
    p = subprocess.run(["/usr/bin/python3", path], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    # the output the document shows, line for line
    shown = re.search(r"it prints:\s*```\n(.*?)```", doc, re.S)
    assert shown, "no example output in docs/grpc.md"
    assert p.stdout == shown.group(1), (p.stdout, shown.group(1))
    assert v.stop() == 0


if __name__ == "__main__":
    stubs()
    run([test_health, test_reflection_lists_services_and_describes_them,
         test_check_transactions_match_vpsctl_run, test_check_reply_fields_and_modifications,
         test_evaluate_matches_vpsctl_run, test_invalid_arguments,
         test_deadline_exceeded_and_session_busy, test_oversized_message_refused,
         test_many_calls_in_flight, test_admin_reload_stats_quarantine,
         test_drain_finishes_calls_in_flight, test_docs_example_client])
