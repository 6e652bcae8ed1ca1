#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `http` connector against a scripted Python http.server endpoint.

The endpoint records every request and plays what each test scripts:
verdicts and fields in our JSON protocol, header changes, slow replies,
garbage, 5xx statuses, huge replies (with and without Content-Length), and
rspamd's /checkv2 reply format (recorded from rspamd 3.x's protocol
documentation; rspamd itself is not installed here).  HTTPS runs with a
test CA, server and client certificates made by openssl at test time.

The connector is driven by `vpsctl run --json` and by vpsd's milter front
end (many sessions on one worker while every call is slow: the event loop
is not blocked)."""
import json, os, re, socket, ssl, struct, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
import taplib
import reportlib
from reportlib import milter_connect_verdict, milter_pkt, milter_read, mods, stage

from taplib import run, tmpdir


def results(report, stage_name, connector="web"):
    return reportlib.results(report, stage_name, connector)

VPSD = os.environ["VPSD"]
VPSCTL = os.environ["VPSCTL"]
SRC = os.environ["VPS_SRCDIR"]

MESSAGE = ("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi there\r\n"
           "X-Old: remove me\r\n\r\nHello\r\n")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- a scripted HTTP endpoint ---------------------------------------------

class Endpoint:
    """handler(req) -> (status, body) or (status, body, headers) or
    ("sleep", seconds, then) or ("raw", bytes) (written as is, then closed).
    req: {"path", "headers" (list of pairs), "body" (bytes), "port"}."""

    def __init__(self, handler, tls=None):
        self.handler = handler
        self.requests = []
        self.ports = set()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: connection reuse is visible

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                req = {"path": self.path, "headers": list(self.headers.items()), "body": body,
                       "port": self.client_address[1]}
                with outer.lock:
                    outer.requests.append(req)
                    outer.ports.add(self.client_address[1])
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    out = outer.handler(req)
                    while out[0] == "sleep":
                        time.sleep(out[1])
                        out = out[2]
                    if out[0] == "raw":
                        self.wfile.write(out[1])
                        self.close_connection = True
                        return
                    status, payload = out[0], out[1]
                    extra = out[2] if len(out) > 2 else {}
                    if isinstance(payload, (dict, list)):
                        payload = json.dumps(payload)
                    if isinstance(payload, str):
                        payload = payload.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if extra.get("no_length"):
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    with outer.lock:
                        outer.active -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- vpsctl run ------------------------------------------------------------

def make_conf(d, connectors, rules, extra=""):
    write(os.path.join(d, "rules.vsl"), rules)
    write(os.path.join(d, "vps.conf"), f"""
[vpsd]
rules = rules.vsl
workers = 1
[log]
level = info
[quarantine]
dir = q
names = held
{connectors}
{extra}
""")
    write(os.path.join(d, "m.eml"), MESSAGE)
    return os.path.join(d, "vps.conf")


def http_block(url, name="web", extra="", timeout="3s"):
    return f"[connector {name}]\ntype = http\nurl = {url}\ntimeout = {timeout}\n{extra}\n"


ENVELOPE = ("--from", "alice@example.com", "--rcpt", "bob@example.org", "--rcpt",
            "carol@example.org", "--client-ip", "192.0.2.7", "--helo", "mx.example.com")


def vpsctl_run(d, *args):
    p = subprocess.run([VPSCTL, "-c", os.path.join(d, "vps.conf"), "run",
                        os.path.join(d, "m.eml"), "--json", *(args or ENVELOPE)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout), p.stderr


# ---- mode = json -----------------------------------------------------------

def test_json_document_and_verdict():
    ep = Endpoint(lambda req: (200, {"verdict": "reject", "code": 550, "enhanced": "5.7.2",
                                     "text": "Go away"}))
    d = tmpdir()
    make_conf(d, http_block(ep.url + "/check"), 'data { rule "d" => call web }\n')
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert (s["verdict"], s["code"], s["enhanced"], s["text"]) == \
        ("reject", 550, "5.7.2", "Go away"), s
    (r,) = results(report, "data")
    assert r["error"] is False and r["fields"]["status"] == 200, r
    (req,) = ep.requests
    assert req["path"] == "/check"
    hdrs = {k.lower(): v for k, v in req["headers"]}
    assert hdrs["content-type"] == "application/json", hdrs
    doc = json.loads(req["body"])
    assert doc["stage"] == "data" and doc["connector"] == "web", doc
    assert doc["client"]["ip"] == "192.0.2.7" and doc["helo"] == "mx.example.com", doc
    assert doc["envelope"]["from"] == "alice@example.com", doc
    assert doc["envelope"]["rcpts"] == ["bob@example.org", "carol@example.org"], doc
    assert doc["tls"]["active"] is False and doc["auth"]["authenticated"] is False, doc
    assert ["Subject", "hi there"] in doc["headers"], doc["headers"]
    assert doc["data_encoding"] == "utf-8" and doc["data"] == MESSAGE, doc
    assert doc["size"] == len(MESSAGE), doc
    ep.close()


def test_json_fields_and_header_changes():
    reply = {"verdict": "continue",
             "headers": {"add": [{"name": "X-Web", "value": "checked"}],
                         "set": {"X-Set": "two"}, "remove": ["X-Old"]},
             "spam": {"score": 8.5, "tags": ["a", "b"], "deep": {"word": "yes"}}}
    ep = Endpoint(lambda req: (200, reply))
    d = tmpdir()
    make_conf(d, http_block(ep.url), """
data {
  rule "ask" => call web
  rule "high" when web.json("spam.score") > 8.0 and web.status == 200 => add_header "X-High" "yes"
  rule "tag" when "b" in web.json("spam.tags") => add_header "X-Tag" web.json("spam.deep.word")
  rule "missing" when web.json("no.such") == "" => add_header "X-Missing" "empty"
}
""")
    report, _ = vpsctl_run(d)
    got = mods(report)
    for want in [("add_header", "X-Web", "checked"), ("set_header", "X-Set", "two"),
                 ("remove_header", "X-Old", None), ("add_header", "X-High", "yes"),
                 ("add_header", "X-Tag", "yes"), ("add_header", "X-Missing", "empty")]:
        assert want in got, (want, got)
    (r,) = results(report, "data")
    assert r["fields"]["json"]["spam"]["score"] == 8.5, r
    ep.close()


def test_every_stage_and_send_body():
    ep = Endpoint(lambda req: (200, {}))
    d = tmpdir()
    make_conf(d, http_block(ep.url, extra="send_body = no"), """
connect { rule "c" => call web }
helo { rule "h" => call web }
mail { rule "m" => call web }
rcpt { rule "r" => call web }
data { rule "d" => call web }
""")
    report, _ = vpsctl_run(d)
    docs = [json.loads(r["body"]) for r in ep.requests]
    assert [x["stage"] for x in docs] == ["connect", "helo", "mail", "rcpt", "rcpt", "data"], docs
    assert docs[2]["envelope"]["from"] == "alice@example.com", docs
    assert docs[3]["envelope"]["rcpt"] == "bob@example.org", docs[3]
    assert "data" not in docs[5] and "headers" in docs[5], docs[5]
    assert all("data" not in x for x in docs[:5]), docs
    # six calls from one process, one kept-alive connection
    assert len(ep.ports) == 1, ep.ports
    assert report["verdict"] == "accept", report
    ep.close()


def test_verdict_kinds():
    current = {}
    ep = Endpoint(lambda req: (200, current["reply"]))
    d = tmpdir()
    make_conf(d, http_block(ep.url, extra="quarantine = held"), 'data { rule "d" => call web }\n')
    cases = [
        ({"verdict": "accept"}, "accept", 250),
        ({"verdict": "tempfail", "text": "Later"}, "tempfail", 451),
        ({"verdict": "tempfail", "code": 452, "enhanced": "4.3.1", "text": "Full"}, "tempfail", 452),
        ({"verdict": "discard"}, "discard", 250),
        ({"verdict": "quarantine", "text": "held for review"}, "quarantine", 250),
        ({"verdict": "continue", "extra": [1, 2, 3]}, "accept", 250),
        ({}, "accept", 250),
    ]
    for reply, verdict, code in cases:
        current["reply"] = reply
        report, _ = vpsctl_run(d)
        s = stage(report, "data")
        assert report["verdict"] == verdict and s["code"] == code, (reply, s, report["verdict"])
        (r,) = results(report, "data")
        assert r["error"] is False, r
        if verdict == "quarantine":
            assert report["quarantine"] == "held", report
    ep.close()


def test_slow_reply_times_out_to_on_error():
    ep = Endpoint(lambda req: ("sleep", 3, (200, {"verdict": "accept"})))
    d = tmpdir()
    make_conf(d, http_block(ep.url, extra="on_error = reject", timeout="300ms"),
              'data { rule "d" => call web }\n')
    t0 = time.time()
    report, stderr = vpsctl_run(d)
    took = time.time() - t0
    (r,) = results(report, "data")
    assert r["error"] is True and r["verdict"] == "reject", r
    assert stage(report, "data")["verdict"] == "reject"
    assert took < 2.5, took
    assert "web" in stderr, stderr
    ep.close()


def test_garbage_statuses_and_refused_replies_give_on_error():
    deep = "[" * 100000 + "]" * 100000
    cases = [
        (500, {"verdict": "accept"}),                      # 5xx
        (404, "not here"),
        (302, ""),                                          # redirects are not followed
        (200, "this is not json"),
        (200, "[1, 2, 3]"),                                 # not an object
        (200, ""),                                          # empty
        (200, deep),                                        # nested beyond the limit
        (200, "{\"verdict\": \"maybe\"}"),                  # unknown verdict
        (200, {"verdict": 7}),                              # wrong type
        (200, {"verdict": "reject", "code": 250}),          # code of the wrong class
        (200, {"verdict": "reject", "code": 550, "enhanced": "4.7.1"}),
        (200, {"verdict": "reject", "text": "a\r\nX-Injected: 1"}),
        (200, {"verdict": "reject", "text": "nul\u0000here"}),
        (200, {"headers": {"add": [{"name": "X-A", "value": "v\r\nX-Injected: 1"}]}}),
        (200, {"headers": {"add": [{"name": "Bad Name", "value": "v"}]}}),
        (200, {"headers": {"remove": "X-Old"}}),
        (200, {"headers": {"set": [["X-A", "v"]]}}),
        (200, {"code": "550"}),
        ("raw", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"verdict\""),  # cut short
        ("raw", b"garbage garbage\r\n\r\n"),
    ]
    current = {}

    def handler(req):
        c = current["case"]
        return ("raw", c[1]) if c[0] == "raw" else c

    ep = Endpoint(handler)
    d = tmpdir()
    make_conf(d, http_block(ep.url), 'data { rule "d" => call web }\n')
    for case in cases:
        current["case"] = case
        report, _ = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True and r["verdict"] == "tempfail", (case[:2], r)
        assert report["modifications"] == [], (case, report["modifications"])
        s = stage(report, "data")
        assert s["verdict"] == "tempfail" and "Injected" not in json.dumps(s), (case, s)
    ep.close()


def test_huge_reply_is_bounded():
    big = json.dumps({"verdict": "accept", "pad": "x" * (4 * 1024 * 1024)})
    current = {}
    ep = Endpoint(lambda req: (200, big, current["extra"]))
    d = tmpdir()
    make_conf(d, http_block(ep.url, extra="max_reply_size = 64K"), 'data { rule "d" => call web }\n')
    for extra in ({}, {"no_length": True}):
        current["extra"] = extra
        report, stderr = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True and r["verdict"] == "tempfail", r
        assert "max_reply_size" in stderr, stderr
    # the same reply under a large enough limit is fine
    make_conf(d, http_block(ep.url, extra="max_reply_size = 8M"), 'data { rule "d" => call web }\n')
    current["extra"] = {}
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is False and report["verdict"] == "accept", r
    ep.close()


def test_connection_refused_gives_on_error_fast():
    port = free_port()
    d = tmpdir()
    make_conf(d, http_block(f"http://127.0.0.1:{port}/", extra="", timeout="5s") +
              "on_error = discard\n", 'data { rule "d" => call web }\n')
    t0 = time.time()
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is True and r["verdict"] == "discard", r
    assert time.time() - t0 < 3


def test_config_errors():
    d = tmpdir()
    cases = [
        ("type = http\n", "url"),
        ("type = http\nurl = ftp://example.org/\n", "url"),
        ("type = http\nurl = not a url\n", "url"),
        ("type = http\nurl = http://127.0.0.1/\nmode = soap\n", "mode"),
        ("type = http\nurl = http://127.0.0.1/\nca_file = nosuch.pem\n", "ca_file"),
        ("type = http\nurl = http://127.0.0.1/\nkey = vps.conf\n", "key"),
        ("type = http\nurl = http://127.0.0.1/\nmax_reply_size = 0\n", "max_reply_size"),
        ("type = http\nurl = http://127.0.0.1/\nsend_body = perhaps\n", "send_body"),
        ("type = http\nurl = http://127.0.0.1/\nbogus = 1\n", "bogus"),
    ]
    for block, word in cases:
        conf = make_conf(d, "[connector web]\n" + block, 'data { rule "d" => call web }\n')
        p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 1 and word in p.stderr and "web" in p.stderr, (block, p.stderr)
    conf = make_conf(d, "[connector web]\ntype = http\nurl = https://127.0.0.1:1/x\n",
                     'data { rule "d" when web.nosuch == 1 => reject }\n')
    p = subprocess.run([VPSD, "-c", conf, "--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "nosuch" in p.stderr, p.stderr


# ---- mode = rspamd ---------------------------------------------------------

# The shape of rspamd's /checkv2 reply (rspamd 3.x protocol documentation:
# https://rspamd.com/doc/architecture/protocol.html), as rspamd sends it.
def rspamd_reply(action, score, subject=None):
    r = {
        "is_skipped": False,
        "score": score,
        "required_score": 15.0,
        "action": action,
        "thresholds": {"reject": 15.0, "add header": 6.0, "greylist": 4.0},
        "symbols": {
            "BAYES_SPAM": {"name": "BAYES_SPAM", "score": 5.1, "metric_score": 5.1,
                           "description": "Message probably spam, probability: 97%",
                           "options": ["97.00%"]},
            "R_SPF_ALLOW": {"name": "R_SPF_ALLOW", "score": -0.2, "metric_score": -0.2,
                            "description": "SPF verification allows sending",
                            "options": ["+ip4:192.0.2.0/24"]},
            "MIME_GOOD": {"name": "MIME_GOOD", "score": -0.1, "metric_score": -0.1,
                          "description": "Known content-type", "options": ["text/plain"]},
        },
        "messages": {},
        "message-id": "abc@example.com",
        "time_real": 0.012,
        "milter": {"add_headers": {"X-Spamd-Result": {"value": "default: False [1.2 / 15.0]",
                                                      "order": 0}}},
    }
    if subject is not None:
        r["subject"] = subject
    return r


def test_rspamd_request_and_fields():
    ep = Endpoint(lambda req: (200, rspamd_reply("no action", 4.8)))
    d = tmpdir()
    make_conf(d, http_block(ep.url + "/checkv2", name="rspamd", extra="mode = rspamd"), """
data {
  rule "scan" => call rspamd
  rule "tag" when rspamd.score >= 4.5 and "BAYES_SPAM" in rspamd.symbols and rspamd.action == "no action"
    => add_header "X-Score" "high"
}
""")
    report, _ = vpsctl_run(d)
    (req,) = ep.requests
    assert req["path"] == "/checkv2"
    assert req["body"].decode() == MESSAGE, req["body"]
    h = [(k.lower(), v) for k, v in req["headers"]]
    assert ("ip", "192.0.2.7") in h and ("helo", "mx.example.com") in h, h
    assert ("from", "alice@example.com") in h, h
    assert [v for k, v in h if k == "rcpt"] == ["bob@example.org", "carol@example.org"], h
    assert any(k == "queue-id" and v for k, v in h), h
    assert not any(k == "user" for k, v in h), h  # not authenticated
    (r,) = results(report, "data", "rspamd")
    f = r["fields"]
    assert f["score"] == 4.8 and f["action"] == "no action" and f["required_score"] == 15.0, f
    assert f["symbols"] == ["BAYES_SPAM", "MIME_GOOD", "R_SPF_ALLOW"], f
    assert ("add_header", "X-Score", "high") in mods(report), mods(report)
    assert r["verdict"] == "continue" and report["verdict"] == "accept", r
    ep.close()


def test_rspamd_actions_map_to_verdicts():
    current = {}
    ep = Endpoint(lambda req: (200, current["reply"]))
    d = tmpdir()
    make_conf(d, http_block(ep.url + "/checkv2", name="rspamd", extra="mode = rspamd"),
              'data { rule "scan" => call rspamd }\n')
    reject = rspamd_reply("reject", 20.0)
    reject["messages"] = {"smtp_message": "Spam detected, go away"}
    cases = [
        (reject, "reject", 554, "Spam detected, go away", []),
        (rspamd_reply("reject", 20.0), "reject", 554, "Spam message rejected", []),
        (rspamd_reply("soft reject", 9.0), "tempfail", 451, None, []),
        (rspamd_reply("greylist", 5.0), "tempfail", 451, None, []),
        (rspamd_reply("add header", 7.0), "accept", 250, None, [("set_header", "X-Spam", "Yes")]),
        (rspamd_reply("rewrite subject", 8.0, "[SPAM] hi there"), "accept", 250, None,
         [("set_header", "Subject", "[SPAM] hi there")]),
        (rspamd_reply("rewrite subject", 8.0), "accept", 250, None,
         [("set_header", "Subject", "*** SPAM *** hi there")]),
        (rspamd_reply("no action", 1.0), "accept", 250, None, []),
        (rspamd_reply("custom action", 1.0), "accept", 250, None, []),
    ]
    for reply, verdict, code, text, want_mods in cases:
        current["reply"] = reply
        report, _ = vpsctl_run(d)
        s = stage(report, "data")
        assert report["verdict"] == verdict and s["code"] == code, (reply["action"], s)
        if text:
            assert s["text"] == text, s
        assert mods(report) == want_mods, (reply["action"], mods(report))
    # apply_action = no: fields only
    make_conf(d, http_block(ep.url + "/checkv2", name="rspamd",
                            extra="mode = rspamd\napply_action = no"), """
data {
  rule "scan" => call rspamd
  rule "own" when rspamd.action == "reject" => tempfail 451 4.7.1 "our own decision"
}
""")
    current["reply"] = rspamd_reply("reject", 20.0)
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert (s["verdict"], s["text"]) == ("tempfail", "our own decision"), s
    # a reply without score/action is not rspamd's
    current["reply"] = {"verdict": "reject"}
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data", "rspamd")
    assert r["error"] is True, r
    ep.close()


def test_rspamd_before_data_is_an_error_and_hostile_helo_is_not_sent():
    ep = Endpoint(lambda req: (200, rspamd_reply("no action", 0.0)))
    d = tmpdir()
    make_conf(d, http_block(ep.url + "/checkv2", name="rspamd",
                            extra="mode = rspamd\non_error = continue"),
              'mail { rule "m" => call rspamd }\ndata { rule "d" => call rspamd }\n')
    report, _ = vpsctl_run(d, "--from", "alice@example.com", "--rcpt", "bob@example.org",
                           "--helo", "evil\r\nX-Injected: 1")
    (r,) = results(report, "mail", "rspamd")
    assert r["error"] is True, r
    (req,) = ep.requests  # only the data call reached the server
    names = [k.lower() for k, v in req["headers"]]
    assert "helo" not in names and "x-injected" not in names, req["headers"]
    ep.close()


# ---- HTTPS -------------------------------------------------------------------

def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (args, p.stderr)


def make_pki(d):
    """ca.pem/ca.key, server.pem/key for 127.0.0.1, client.pem/key, and an
    unrelated other-ca.pem."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN=vps test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    write(os.path.join(d, "server.ext"), "subjectAltName = IP:127.0.0.1\n")
    write(os.path.join(d, "client.ext"), "extendedKeyUsage = clientAuth\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=vps test {who}",
                "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem",
                cwd=d)


def test_https_with_a_test_ca_and_client_certificate():
    d = tmpdir()
    make_pki(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    seen = []

    def handler(req):
        seen.append(req)
        return (200, {"verdict": "reject", "text": "over tls"})

    ep = Endpoint(handler, tls=ctx)
    rules = 'data { rule "d" => call web }\n'
    # verified server, client certificate given: works
    make_conf(d, http_block(ep.url, extra="ca_file = ca.pem\ncert = client.pem\nkey = client.key"),
              rules)
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert (s["verdict"], s["text"]) == ("reject", "over tls"), s
    assert len(seen) == 1
    # failures: unknown CA (the system store), a wrong CA, no client certificate
    for extra in ("cert = client.pem\nkey = client.key",
                  "ca_file = other-ca.pem\ncert = client.pem\nkey = client.key",
                  "ca_file = ca.pem"):
        make_conf(d, http_block(ep.url, extra=extra), rules)
        report, stderr = vpsctl_run(d)
        (r,) = results(report, "data")
        assert r["error"] is True and r["verdict"] == "tempfail", (extra, r)
    assert len(seen) == 1, seen  # no request got through without full verification
    # a name that is not in the certificate fails too
    make_conf(d, http_block(ep.url.replace("127.0.0.1", "localhost"),
                            extra="ca_file = ca.pem\ncert = client.pem\nkey = client.key"), rules)
    report, _ = vpsctl_run(d)
    (r,) = results(report, "data")
    assert r["error"] is True, r
    ep.close()


# ---- the event loop is not blocked: vpsd milter sessions ---------------------

def start_vpsd(d, conf, needle, timeout=15):
    log = os.path.join(d, "vpsd.log")
    proc = subprocess.Popen([VPSD, "-c", conf], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    taplib._procs.append(proc)
    deadline = time.time() + timeout
    while needle not in open(log).read():
        assert proc.poll() is None and time.time() < deadline, open(log).read()
        time.sleep(0.05)
    return proc, log


def test_slow_service_does_not_block_one_worker():
    def handler(req):
        doc = json.loads(req["body"])
        verdict = "reject" if doc["client"]["ip"].endswith(".66") else "continue"
        return ("sleep", 0.5, (200, {"verdict": verdict}))

    ep = Endpoint(handler)
    d = tmpdir()
    port = free_port()
    conf = make_conf(d, http_block(ep.url, timeout="10s"), 'connect { rule "c" => call web }\n',
                     extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    proc, log = start_vpsd(d, conf, "milter: listening on")
    out = {}

    def one(i):
        out[i] = milter_connect_verdict(port, f"192.0.2.{66 if i % 4 == 0 else i + 1}")[0]

    t0 = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    took = time.time() - t0
    assert len(out) == 16, out
    for i, cmd in out.items():
        assert cmd in ((b"r", b"y") if i % 4 == 0 else (b"c",)), (i, cmd)
    # one worker, 16 calls of 0.5 s each: concurrent, not one after another
    assert took < 4, took
    assert ep.max_active >= 4, ep.max_active
    proc.terminate()
    assert proc.wait(timeout=20) == 0, open(log).read()[-3000:]
    assert "Sanitizer" not in open(log).read(), open(log).read()[-3000:]
    ep.close()


def test_concurrency_limit():
    ep = Endpoint(lambda req: ("sleep", 0.3, (200, {})))
    d = tmpdir()
    port = free_port()
    conf = make_conf(d, http_block(ep.url, timeout="20s", extra="concurrency = 2"),
                     'connect { rule "c" => call web }\n',
                     extra=f"[milter]\nlisten = inet:127.0.0.1:{port}\n")
    proc, log = start_vpsd(d, conf, "milter: listening on")
    threads = [threading.Thread(target=milter_connect_verdict, args=(port, f"192.0.2.{i + 1}"))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ep.requests) == 8, len(ep.requests)
    assert ep.max_active == 2, ep.max_active
    proc.terminate()
    assert proc.wait(timeout=20) == 0, open(log).read()[-3000:]
    ep.close()


# ---- the documented example ----------------------------------------------------

def docs_block(lang, section="## `http`"):
    text = open(os.path.join(SRC, "docs", "connectors.md")).read()
    part = text[text.index(section):]
    part = part[:part.index("\n## ", 1)] if "\n## " in part[1:] else part
    m = re.search(r"```" + lang + r"\n(.*?)```", part, re.S)
    assert m, f"no {lang} block in {section}"
    return m.group(1)


def test_documented_example():
    ep = Endpoint(lambda req: (200, {"verdict": "continue", "reputation": {"score": 95}}))
    d = tmpdir()
    block = docs_block("ini").replace("http://127.0.0.1:8080/check", ep.url + "/check")
    assert ep.url in block, block
    make_conf(d, block, docs_block("vsl"))
    report, _ = vpsctl_run(d)
    s = stage(report, "data")
    assert s["verdict"] == "reject", s
    ep.close()


if __name__ == "__main__":
    run([
        test_json_document_and_verdict,
        test_json_fields_and_header_changes,
        test_every_stage_and_send_body,
        test_verdict_kinds,
        test_slow_reply_times_out_to_on_error,
        test_garbage_statuses_and_refused_replies_give_on_error,
        test_huge_reply_is_bounded,
        test_connection_refused_gives_on_error_fast,
        test_config_errors,
        test_rspamd_request_and_fields,
        test_rspamd_actions_map_to_verdicts,
        test_rspamd_before_data_is_an_error_and_hostile_helo_is_not_sent,
        test_https_with_a_test_ca_and_client_certificate,
        test_slow_service_does_not_block_one_worker,
        test_concurrency_limit,
        test_documented_example,
    ])
