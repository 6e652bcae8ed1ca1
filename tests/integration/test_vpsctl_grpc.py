#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vpsctl's online commands against a running vpsd (its Admin service over
gRPC): reload, stats, quarantine list/show/delete with --server (and the
same store read offline without it), quarantine release, the address taken
from the configuration, TLS and mutual TLS, and the failures (no daemon,
Admin not served there, a reload refused)."""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(__file__))
import test_grpc as T
import test_grpc_tls as TLS
from taplib import run

VPSCTL = T.VPSCTL


def ctl(*args, ok=True):
    p = subprocess.run([VPSCTL, *args], capture_output=True, timeout=60)
    if ok:
        assert p.returncode == 0, (args, p.returncode, p.stderr.decode())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_reload_and_stats_from_config():
    P = T.stubs()["P"]
    v = T.Vpsd()
    _, out, _ = ctl("-c", v.conf, "reload")
    assert out == "reloaded: generation 2\n", out
    # a broken rule file: refused, vpsd keeps the old rules, exit 1 with FILE:LINE
    rules = os.path.join(v.dir, "rules.vsl")
    T.write(rules, T.RULES + "\nconnect { rule \"x\" => nosuchaction }\n")
    rc, out, err = ctl("-c", v.conf, "reload", ok=False)
    assert rc == 1 and "rules.vsl:" in err and "FAILED_PRECONDITION" in err, (rc, err)
    T.write(rules, T.RULES)
    for sid in ("a", "b"):
        T.check(v, session_id=sid, stage=P.STAGE_CONNECT, client=P.Client(ip="192.0.2.66"))
    _, out, _ = ctl("-c", v.conf, "stats", "--json")
    st = json.loads(out)
    assert st["generation"] == 2 and st["sessions"] == 2, st
    assert {"stage": "connect", "verdict": "reject", "count": 2} in st["stages"], st
    assert [c["name"] for c in st["connectors"]] == ["slowpoke"], st
    check = [m for m in st["methods"] if m["method"] == "/vps.v1.Policy/Check"][0]
    assert check["calls"] == 2 and check["errors"] == 0, check
    _, out, _ = ctl("-c", v.conf, "stats")
    assert out.startswith("generation 2, 2 sessions"), out
    assert "stage connect  reject     2" in out and "connector slowpoke (test)" in out, out
    # --server wins over the configuration
    _, out, _ = ctl("-c", v.conf, f"--server=127.0.0.1:{v.admin_port}", "stats")
    assert out.startswith("generation 2"), out
    assert v.stop() == 0


def test_quarantine_online_and_offline():
    P = T.stubs()["P"]
    v = T.Vpsd()
    server = f"127.0.0.1:{v.admin_port}"
    r = T.unary(v.channel, "/vps.v1.Policy/Evaluate",
                P.EvaluateRequest(message=T.MSG_HOLD, apply=True), P.EvaluateResponse)
    qid = r.quarantine_id
    assert qid, r
    _, online, _ = ctl("-c", v.conf, "--server", server, "quarantine", "list", "--json")
    _, offline, _ = ctl("-c", v.conf, "quarantine", "list", "--json")
    assert json.loads(online) == json.loads(offline), (online, offline)
    e = json.loads(online)[0]
    assert e["id"] == qid and e["name"] == "spam" and e["subject"] == "hold me please", e
    _, text, _ = ctl("-c", v.conf, "--server", server, "quarantine", "list")
    assert text.startswith(qid + " spam"), text
    p = subprocess.run([VPSCTL, "-c", v.conf, "--server", server, "quarantine", "show", qid],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == T.MSG_HOLD, p
    _, out, _ = ctl("-c", v.conf, "--server", server, "quarantine", "show", qid,
                    "--format", "json")
    assert json.loads(out)["id"] == qid, out
    # release: vpsd's job; without [quarantine] release_to it is refused
    rc, _, err = ctl("-c", v.conf, "quarantine", "release", qid, ok=False)
    assert rc == 1 and "release_to" in err, (rc, err)
    rc, _, err = ctl("-c", v.conf, "--server", server, "quarantine", "show",
                     "20200101T000000Z-0123456789ab", ok=False)
    assert rc == 1 and "NOT_FOUND" in err, err
    _, out, _ = ctl("-c", v.conf, "--server", server, "quarantine", "delete", qid)
    assert out == f"deleted {qid}\n", out
    _, out, _ = ctl("-c", v.conf, "quarantine", "list", "--json")
    assert json.loads(out) == [], out
    assert v.stop() == 0


def test_failures():
    port = T.free_port()
    rc, _, err = ctl("--server", f"127.0.0.1:{port}", "stats", ok=False)
    assert rc == 1 and "cannot reach vpsd" in err, (rc, err)
    rc, _, err = ctl("--server", f"127.0.0.1:{port}", "quarantine", ok=False)
    assert rc == 2, rc
    # no admin_listen: the Policy listener refuses Admin calls
    v = T.Vpsd(admin=False)
    rc, _, err = ctl("-c", v.conf, "reload", ok=False)
    assert rc == 1 and "PERMISSION_DENIED" in err, (rc, err)
    assert v.stop() == 0


def test_tls_and_mutual_tls():
    c = TLS.certs()
    # TLS on both listeners: the CA comes from --tls-ca
    v = T.Vpsd(grpc_extra=TLS.tls_lines())
    _, out, _ = ctl("-c", v.conf, "--tls-ca", f"{c}/ca.pem", "--tls-server-name", "localhost",
                    "stats")
    assert out.startswith("generation 1"), out
    rc, _, err = ctl("-c", v.conf, "--tls-ca", f"{c}/stranger.pem", "stats", ok=False)
    assert rc == 1, (rc, err)
    assert v.stop() == 0
    # Admin on the Policy listener for mutual-TLS clients: the CA is
    # [grpc] tls_client_ca, the client certificate from the command line
    v = T.Vpsd(grpc_extra=TLS.tls_lines(mutual=True, admin_mtls=True), admin=False)
    _, out, _ = ctl("-c", v.conf, "--tls-cert", f"{c}/client.pem", "--tls-key",
                    f"{c}/client.key", "reload")
    assert out == "reloaded: generation 2\n", out
    rc, _, err = ctl("-c", v.conf, "reload", ok=False)
    assert rc == 1, (rc, err)
    assert v.stop() == 0


if __name__ == "__main__":
    run([test_reload_and_stats_from_config, test_quarantine_online_and_offline, test_failures,
         test_tls_and_mutual_tls])
